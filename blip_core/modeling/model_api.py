"""What the model base classes of both trees share beyond loading: `name_or_path`, the output embeddings,
`push_to_hub` (`blip_core.io.hub_upload`). Framework-neutral: it only walks attributes."""

from __future__ import annotations

from typing import Any, ClassVar

from blip_core.io.hub_upload import PushToHubMixin


class PreTrainedModelAPI(PushToHubMixin):
    """Mixin of `BlipPreTrainedModel` and `TFBlipPreTrainedModel`.

    `name_or_path` is what the model was loaded from (`from_pretrained`'s first argument as a string, as
    `transformers` records it; "" for a model built from a config); `push_to_hub` saves with the model's
    `save_pretrained` options (`max_shard_size`, `safe_serialization`, `variant`).
    """

    push_save_options: ClassVar[tuple[str, ...]] = ("max_shard_size", "safe_serialization", "variant")

    @property
    def name_or_path(self) -> str:
        return self.__dict__.get("_blip_name_or_path", getattr(self.config, "name_or_path", ""))

    @name_or_path.setter
    def name_or_path(self, value: Any) -> None:
        self.__dict__["_blip_name_or_path"] = str(value)

    def get_output_embeddings(self) -> Any:
        """The LM head's decoder layer: the text decoder's for captioning and VQA; None without an LM head.

        `transformers` 4.57 returns None for `BlipForConditionalGeneration` and `BlipForQuestionAnswering`
        (only its `BlipTextLMHeadModel` answers); here they answer with their text decoder's head.
        """
        decoder = getattr(self, "text_decoder", None)
        return None if decoder is None else decoder.get_output_embeddings()
