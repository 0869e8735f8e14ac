"""The code the ensemble's python-backend models run, importable and tested outside Triton.

contract (names, shapes, sizes) · preprocess · engine_onnx · postprocess (rfdetr's PostProcess,
then RLE and polygons) · rle · polygons · packing (variable-length outputs) · classes (ids ->
names) · pipeline (all stages in one process) · triton_model (what every model.py shares).
"""
