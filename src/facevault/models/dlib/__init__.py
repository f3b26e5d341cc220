"""The built-in packs: dlib's HOG detector, 5- or 68-point landmarks and 128-d ResNet.

- ``models``: the detector and embedders (dlib itself, or the ResNet converted to ONNX);
- ``convert``: the dlib ResNet -> ONNX converter;
- ``license``: the license gate of the 68-point pack;
- ``builtin``: the pack factories and what ``facevault models`` says about the built-in packs.

Importing this package loads nothing; the registry (``models.registry``) imports what it needs from it.
"""
