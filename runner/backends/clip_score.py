"""clip_score as torchmetrics and the CLIP paper define it: 100 x max(cos(image embedding,
text embedding), 0), with transformers' CLIPModel and CLIPProcessor (the prompt padded and
cut at the text model's longest input, as torchmetrics cuts it). In float32, one batch of
BATCH pairs at a time; the model is loaded once per compare step."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL.Image import Image

BATCH = 16


class ClipScorer:
    """A CLIP model loaded from SOURCE (a folder or hub id) onto DEVICE."""

    def __init__(self, source: str, device: str) -> None:
        import torch
        from transformers import CLIPModel, CLIPProcessor

        self.device = device
        model: Any = CLIPModel.from_pretrained(source, dtype=torch.float32)
        self.model = model.to(device).eval()
        self.processor: Any = CLIPProcessor.from_pretrained(source)

    def scores(self, images: list[Image], prompts: list[str]) -> list[float]:
        """Each image's clip_score against its prompt."""
        found: list[float] = []
        for start in range(0, len(images), BATCH):
            found += self._batch(images[start : start + BATCH], prompts[start : start + BATCH])
        return found

    def _batch(self, images: list[Image], prompts: list[str]) -> list[float]:
        import torch

        longest = self.model.config.text_config.max_position_embeddings
        inputs = self.processor(
            text=prompts,
            images=[i.convert("RGB") for i in images],
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=longest,
        ).to(self.device)
        with torch.no_grad():  # CLIPModel's forward: the projected embeddings of both
            out = self.model(**inputs)
        pictures, texts = out.image_embeds, out.text_embeds
        pictures = pictures / pictures.norm(p=2, dim=-1, keepdim=True)
        texts = texts / texts.norm(p=2, dim=-1, keepdim=True)
        score = 100 * (pictures * texts).sum(dim=-1)
        return [float(x) for x in torch.clamp(score, min=0).cpu()]
