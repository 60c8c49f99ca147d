"""Neural building blocks: conformer blocks (full-context and causal/chunked), subsampling."""
from toolkit.nn.conformer import ConformerBlock, ConformerStack
from toolkit.nn.subsampling import Conv2dSubsampling

__all__ = ["ConformerBlock", "ConformerStack", "Conv2dSubsampling"]
