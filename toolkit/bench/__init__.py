"""Benchmarks and device checks that are more than a CLI: the GPU check (``gpu_check``, its
device steps ``gpu_steps``), decoding speed against sherpa-onnx (``decode_speed``), and the
synthetic training inputs they and the tests share (``synthetic_data``)."""
