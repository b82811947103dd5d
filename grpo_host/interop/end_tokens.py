"""Which end-of-sequence and padding tokens to cut off a completion before it is scored.

Trainers that decode with ``skip_special_tokens=False`` (OpenRLHF does) send every completion
with its EOS token still on the end (``<|im_end|>`` for Qwen), and a reward that anchors on the
end of the text (``format``) then scores 0 on every sample. The server and the exported files
cut a trailing run of these tokens off first (``strip_end_tokens`` lives in
:mod:`~grpo_host.interop.trainer_side`, whose body the exported files copy; :func:`strip_completion`
applies it to a ``/score`` sample); :func:`tokens_from_tokenizer` reads the list from a tokenizer
instead of the default, from its JSON files when it is a local folder (no transformers needed),
else through ``transformers.AutoTokenizer``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from grpo_host.errors import GrpoHostError
from grpo_host.interop.trainer_side import strip_end_tokens

# The EOS/pad tokens of the model families GRPO is run on today: Qwen/ChatML, GPT-2 style and
# Qwen's pad, Llama 2 / Mistral, Llama 3 (turn end and text end), Gemma.
DEFAULT_END_TOKENS: tuple[str, ...] = (
    "<|im_end|>", "<|endoftext|>", "</s>", "<|eot_id|>", "<|end_of_text|>", "<end_of_turn>",
)


def strip_completion(completion: Any, tokens: list[str] | tuple[str, ...]) -> Any:
    """A ``/score`` sample's completion with its trailing end tokens cut off: the text, or the
    last message's content of a chat completion (anything else as it is)."""
    if isinstance(completion, str):
        return strip_end_tokens(completion, tokens)
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        last = completion[-1]
        if isinstance(last.get("content"), str):
            return [*completion[:-1], {**last, "content": strip_end_tokens(last["content"], tokens)}]
    return completion


def _content(token: Any) -> str | None:
    if isinstance(token, dict):  # {"content": "<|im_end|>", "lstrip": false, ...}
        token = token.get("content")
    return token if isinstance(token, str) and token else None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise GrpoHostError(f"cannot read {path}: {exc}") from None
    return data if isinstance(data, dict) else {}


def _from_folder(folder: Path) -> list[str]:
    tokens: list[str] = []
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        data = _read_json(folder / name)
        tokens += [t for key in ("eos_token", "pad_token") if (t := _content(data.get(key)))]
    # A model can end generation on several ids (Llama 3: <|end_of_text|>, <|eom_id|>, <|eot_id|>);
    # generation_config.json lists them by id, the tokenizer's added tokens name them.
    ids = _read_json(folder / "generation_config.json").get("eos_token_id")
    ids = set(ids if isinstance(ids, list) else [ids] if isinstance(ids, int) else [])
    if ids:
        added = _read_json(folder / "tokenizer.json").get("added_tokens") or []
        added_by_id = {t.get("id"): t.get("content") for t in added if isinstance(t, dict)}
        decoder = _read_json(folder / "tokenizer_config.json").get("added_tokens_decoder") or {}
        added_by_id.update({int(k): _content(v) for k, v in decoder.items() if str(k).isdigit()})
        tokens += [added_by_id[i] for i in sorted(ids) if added_by_id.get(i)]
    return tokens


def tokens_from_tokenizer(name_or_path: str) -> list[str]:
    """The EOS and pad tokens of a tokenizer (a local folder, or a name transformers can load)."""
    folder = Path(name_or_path).expanduser()
    if folder.is_dir():
        tokens = _from_folder(folder)
    else:
        try:
            from transformers import AutoTokenizer
        except ImportError:
            raise GrpoHostError(f"--tokenizer {name_or_path!r} is not a local folder, and loading it by name needs "
                                "transformers (pip install 'grpo-host[train]'); or give the folder that holds its "
                                "tokenizer_config.json") from None
        try:
            tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        except Exception as exc:  # noqa: BLE001 - whatever the hub or the files say, said once
            raise GrpoHostError(f"cannot load tokenizer {name_or_path!r}: {type(exc).__name__}: {exc}") from None
        tokens = [t for t in (_content(tokenizer.eos_token), _content(tokenizer.pad_token)) if t]
    tokens = list(dict.fromkeys(tokens))
    if not tokens:
        raise GrpoHostError(f"tokenizer {name_or_path!r} names no eos_token or pad_token; leave out --tokenizer "
                            f"to cut the default list ({', '.join(DEFAULT_END_TOKENS)})")
    return tokens


def resolve_end_tokens(tokenizer: str | None, strip: bool = True) -> list[str]:
    """The list the CLI options ask for: none, a tokenizer's, or the default."""
    if not strip:
        return []
    return tokens_from_tokenizer(tokenizer) if tokenizer else list(DEFAULT_END_TOKENS)
