"""SentencePiece text tokenizer, and the caption stream built from the model's text tokens.

The model emits one text token per frame; padding tokens (PAD, end-of-padding)
mean "no new text". Pieces carry SentencePiece's word-start mark, which becomes
a space, so captions can be shown as they arrive.
"""
from __future__ import annotations

from pathlib import Path

from core.errors import CheckpointError

WORD_START = "\u2581"


class TextTokenizer:
    def __init__(self, path: str | Path, padding_id: int = 3, end_padding_id: int = 0) -> None:
        import sentencepiece

        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"tokenizer model not found: {path}")
        self.sp = sentencepiece.SentencePieceProcessor()
        try:
            self.sp.Load(str(path))
        except (OSError, RuntimeError) as e:
            raise CheckpointError(f"cannot read {path} as a SentencePiece model: {e}") from None
        self.silent = {padding_id, end_padding_id}

    def __len__(self) -> int:
        return self.sp.GetPieceSize()

    def encode(self, text: str) -> list[int]:
        return list(self.sp.EncodeAsIds(text))

    def decode(self, ids: list[int]) -> str:
        return self.sp.DecodeIds([i for i in ids if i not in self.silent and 0 <= i < len(self)])

    def piece(self, token: int) -> str:
        """The caption text one generated token adds ("" for padding or out-of-vocabulary tokens)."""
        if token in self.silent or not 0 <= token < len(self):
            return ""
        return self.sp.IdToPiece(token).replace(WORD_START, " ")
