"""Which codec a tensor gets when the caller does not say.

Kept to cheap, exact tests: a wide float tensor that holds only narrower values
is stored narrow (``narrowed_float``); everything else gets the byte-plane codec
with its dtype's measured layout. The choice is recorded in the tensor's codec
config, so files stay decodable whatever later policies choose.
"""

from __future__ import annotations

import numpy as np

from ..dtypes import DTypeSpec
from .base import Codec
from .byte_planes import BytePlanesCodec
from .narrowed_float import NarrowedFloatCodec, hides_narrower


def choose_codec(array: np.ndarray, spec: DTypeSpec) -> Codec:
    narrow = hides_narrower(array)
    if narrow is not None:
        return NarrowedFloatCodec.for_narrow_dtype(narrow)
    return BytePlanesCodec.for_dtype(spec)
