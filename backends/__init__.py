"""The code the ensemble's python-backend models run, importable and tested outside Triton.

contract (names, dtypes, dims, sizes) · frames (what a frame must be) · results (the frame
result and its wire format, numpy only) · preprocess · jpeg_files (what a JPEG file must be, how
clients write one; numpy only) · jpeg_decode (JPEG files -> frames, OpenCV or nvJPEG) ·
preprocess_stage (what both preprocess models serve) · postprocess (rfdetr's PostProcess, then
RLE and polygons; torch ops on any device) · engine_onnx · engine_torch · rle · polygons ·
packing · classes (ids -> names) · pipeline (all stages in one process) · triton_model (what
every model.py shares) · errors · torchvision_cpu (rfdetr importable on a CPU-only torch).
"""
