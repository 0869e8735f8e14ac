/* Run by tests/backends/test_crew_races.py, built with contour_trace.c under ThreadSanitizer: one
 * crew traces the same masks 3000 times while the caller wakes some of its helpers, or none, and
 * pauses at random (so helpers are caught spinning, asleep, or between batches); every call must
 * return the points a call without helpers returns. Exit 0 when all match. */
#define _DEFAULT_SOURCE /* usleep */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int64_t largest_contours(const int32_t *toggles, const int64_t *ends, const int64_t *heights, int64_t count,
                         int32_t *points, int64_t room, int64_t *offsets, int64_t *bad_mask, void *crew);
void *crew_start(int64_t helpers);
void crew_wake(void *crew, int64_t helpers);
void crew_stop(void *crew);

enum { MASKS = 12, HEIGHT = 40, ROOM = 2048, CALLS = 3000 };

int main(void) {
    int32_t toggles[MASKS * 40];
    int64_t ends[MASKS], heights[MASKS], n = 0;
    srand(1);
    for (int m = 0; m < MASKS; m++) { /* a few columns of one run each, left to right */
        int columns = 3 + rand() % 8, x0 = rand() % 5;
        for (int c = 0; c < columns; c++) {
            int top = rand() % 10, length = 5 + rand() % 20;
            toggles[n++] = (x0 + c) * HEIGHT + top;
            toggles[n++] = (x0 + c) * HEIGHT + top + length;
        }
        ends[m] = n;
        heights[m] = HEIGHT;
    }
    static int32_t expected[2 * ROOM], points[2 * ROOM];
    int64_t expected_offsets[MASKS + 1], offsets[MASKS + 1], bad = -1;
    int64_t total = largest_contours(toggles, ends, heights, MASKS, expected, ROOM, expected_offsets, &bad, NULL);
    if (total <= 0 || total > ROOM) return 2;
    void *crew = crew_start(3);
    if (!crew) return 3;
    for (int call = 0; call < CALLS; call++) {
        if (rand() % 2) crew_wake(crew, rand() % 4);
        if (rand() % 3 == 0) usleep(rand() % 1500);
        int64_t got = largest_contours(toggles, ends, heights, MASKS, points, ROOM, offsets, &bad, crew);
        if (got != total || memcmp(points, expected, (size_t)total * 2 * sizeof(int32_t)) ||
            memcmp(offsets, expected_offsets, sizeof(offsets))) {
            printf("call %d: points differ from one thread's\n", call);
            return 1;
        }
    }
    crew_stop(crew);
    printf("%d calls, %lld points each, as one thread\n", CALLS, (long long)total);
    return 0;
}
