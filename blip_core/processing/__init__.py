"""The input side: images and text to `pixel_values` and `input_ids`, as `transformers`' BLIP processors do.

Belongs here: image loading (`image_loading`, `image_urls`, `image_depth`), the slow and fast image processors
(`image_processing`, `image_processing_fast`, with `image_resample` and `image_backends`), the tokenizer
(`tokenization`, with encoding in `text_batching`, padding in `text_padding`, their shared option checks in
`text_options`, `added_tokens`), the original BLIP's text cleaning (`text_cleaning`), `BlipProcessor` (`processor`),
the `BatchFeature`/`BatchEncoding` containers (`feature`) and the Auto processor classes (`auto`). It imports `io`
and `config` only; the model trees and the applications import it.
"""

from blip_core.processing.processor import BlipProcessor

__all__ = ["BlipProcessor"]
