"""Export of trained models for other runtimes: ONNX graphs (onnxruntime, sherpa-onnx)."""
