"""The run's prompts: load a data set and shape each row into what GRPOTrainer reads.

Sources: ``builtin:arithmetic`` (generated), a data source that a plugin provides (its params
in ``data.params``; ``grpo-host datasets`` lists them), a local
``.json``/``.jsonl``/``.parquet``/``.csv`` file or a folder saved with ``save_to_disk``, or a
Hugging Face dataset name. The prompt comes
from ``prompt_column`` or from ``template`` (a format string over the row's columns); with a
chat template it becomes ``[system?, user]`` messages, else plain text with the system prompt
in front. Every other column stays, because rewards read them (``answer``, ...).
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

from grpo_host.config import BUILTIN_DATA, ConfigError, DataSection
from grpo_host.errors import GrpoHostError

FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}


def load_datasets(section: DataSection, tokenizer: Any) -> tuple[Any, Any | None]:
    """``(train, eval or None)``, with a ``prompt`` column in TRL's form."""
    return shape_datasets(*load_raw_datasets(section), section, tokenizer)


def load_raw_datasets(section: DataSection) -> tuple[Any, Any | None]:
    """``(train, eval or None)`` as the source has them, checked: not empty, with the prompt
    column (or the template's columns). Needs no tokenizer, so the worker runs it before the
    model is built: a bad data file costs seconds, not a model build."""
    train = _load(section, section.split)
    _check_rows(train, section, section.split)
    eval_ds = None
    if isinstance(section.eval_split, str):
        eval_ds = _load(section, section.eval_split)
        _check_rows(eval_ds, section, section.eval_split)
    return train, eval_ds


def _check_rows(dataset: Any, section: DataSection, split: str) -> None:
    if len(dataset) == 0:
        raise ConfigError(f"data.source: {section.source!r} (split {split!r}) has no rows; give a data set with prompts")
    problem = _column_problem(section, list(dataset.column_names))
    if problem:
        raise ConfigError(problem)


def _column_problem(section: DataSection, columns: list[str]) -> str | None:
    if section.template is not None:
        wanted = {name for _, name, _, _ in string.Formatter().parse(section.template) if name}
        missing = sorted(wanted - set(columns))
        if missing:
            return f"data.template uses column(s) {', '.join(missing)}; the data has {', '.join(columns)}"
    elif section.prompt_column not in columns:
        return (f"data.prompt_column: {section.prompt_column!r} is not a column; the data has {', '.join(columns)} "
                "(or set data.template, e.g. 'Solve: {question}')")
    return None


def check_local_data(section: DataSection) -> list[str]:
    """A local data file opened and checked without the ``datasets`` library (for the host,
    before anything is launched): it exists, holds rows, and has the prompt column. Other
    sources are checked by the worker, still before the model is built."""
    source = section.source
    path = Path(source).expanduser()
    suffix = path.suffix.lower()
    if source.startswith("builtin:") or suffix not in FILE_BUILDERS:
        return []
    if not path.is_file():
        return [f"data.source: file {source!r} not found" + (" (it is a folder)" if path.is_dir() else "")]
    try:
        columns, has_rows = _peek(path, suffix)
    except Exception as exc:  # noqa: BLE001 - any reader's error: the file is not what it says
        return [f"data.source: {source!r} cannot be read as {suffix[1:]}: {type(exc).__name__}: {exc}"]
    if not has_rows:
        return [f"data.source: {source!r} is empty (no rows); give a file with one prompt per row"]
    if columns is None:
        return []
    problem = _column_problem(section, columns)
    return [problem] if problem else []


def _peek(path: Path, suffix: str) -> tuple[list[str] | None, bool]:
    """``(columns of the first row, whether there is a row)``; columns None when unknown."""
    import json

    if suffix == ".parquet":
        import pyarrow.parquet as pq

        meta = pq.ParquetFile(str(path)).metadata
        return list(meta.schema.names), meta.num_rows > 0
    if suffix == ".csv":
        import csv

        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            return header, header is not None and next(reader, None) is not None
    with open(path, encoding="utf-8") as handle:
        head = handle.read(1 << 20)
        first = next((line for line in head.splitlines() if line.strip()), None)
    if first is None:
        return None, False
    try:
        row = json.loads(first)  # JSON lines (also what a .json file often holds)
        if isinstance(row, dict) and (suffix == ".jsonl" or not first.lstrip().startswith("[")):
            return list(row), True
    except ValueError:
        pass
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict) and all(isinstance(v, list) for v in data.values()) and data:
        return list(data), any(len(v) for v in data.values())  # {"column": [values...]}
    if isinstance(data, list):
        return (list(data[0]) if data and isinstance(data[0], dict) else None), bool(data)
    return None, True


def shape_datasets(train: Any, eval_ds: Any | None, section: DataSection, tokenizer: Any) -> tuple[Any, Any | None]:
    """Shuffle, hold out, cap and shape raw data into TRL's ``prompt`` form."""
    held_out = section.eval_split
    if section.shuffle_seed is not None:
        train = train.shuffle(seed=section.shuffle_seed)
    if held_out is not None and not isinstance(held_out, str):
        if isinstance(held_out, int) and held_out >= len(train):
            raise ConfigError(f"data.eval_split: {held_out} rows held out of {len(train)}; hold out fewer")
        parts = train.train_test_split(test_size=held_out, seed=section.shuffle_seed or 0, shuffle=False)
        train, eval_ds = parts["train"], parts["test"]
    if section.max_samples is not None:
        train = train.select(range(min(section.max_samples, len(train))))
    use_chat = _use_chat(section, tokenizer)
    train = shape_prompts(train, section, use_chat)
    if eval_ds is not None:
        eval_ds = shape_prompts(eval_ds, section, use_chat)
    return train, eval_ds


def _use_chat(section: DataSection, tokenizer: Any) -> bool:
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if section.chat_template is True and not has_template:
        raise ConfigError("data.chat_template: true, but the tokenizer has no chat template; set it to false")
    return has_template if section.chat_template == "auto" else bool(section.chat_template)


def _load(section: DataSection, split: str):
    import datasets

    source = section.source
    if source == BUILTIN_DATA:  # another builtin: name is refused by the config
        from grpo_host.datasets import arithmetic_rows

        try:
            rows = arithmetic_rows(**section.builtin)
        except TypeError as exc:
            raise ConfigError(f"data.builtin: {exc}; takes n, seed, max_operand, operations")
        except ValueError as exc:
            raise ConfigError(str(exc))
        return datasets.Dataset.from_list(rows)
    data_source = _data_source(source)
    if data_source is not None:
        try:
            return datasets.Dataset.from_list(list(data_source.draw(section.params)))
        except GrpoHostError as exc:
            raise ConfigError(f"data.source {source!r}: {exc}") from None
    if section.params:
        raise ConfigError(f"data.params is for a data source (`grpo-host datasets` lists them); {source!r} is not one")
    path = Path(source).expanduser()
    if path.suffix.lower() in FILE_BUILDERS:
        problems = check_local_data(section)
        if problems:
            raise ConfigError(problems[0])
        return datasets.load_dataset(FILE_BUILDERS[path.suffix.lower()], data_files=str(path), split="train")
    if path.is_dir() and ((path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file()):
        loaded = datasets.load_from_disk(str(path))
        return loaded[split] if isinstance(loaded, datasets.DatasetDict) else loaded
    try:
        return datasets.load_dataset(source, section.subset, split=split)
    except Exception as exc:  # noqa: BLE001 - offline, misspelled, no such split: say what was tried
        raise ConfigError(
            f"data.source: could not load {source!r} (split {split!r}) as a Hugging Face data set: "
            f"{type(exc).__name__}: {exc}. Give a .json/.jsonl/.parquet/.csv file, a saved dataset "
            f"folder, a dataset name reachable from here, {BUILTIN_DATA}, or a data source (`grpo-host datasets`)"
        )


def _data_source(name: str):
    """The data source a plugin registered under ``name`` (a conflict raises), or None."""
    from grpo_host.plugins.manager import get_plugin_manager

    manager = get_plugin_manager()
    if name in manager.datasets or ("dataset", name) in manager.conflicts:
        return manager.get_dataset(name)
    return None


def shape_prompts(dataset: Any, section: DataSection, use_chat: bool) -> Any:
    columns = list(dataset.column_names)
    if section.template is not None:
        wanted = {name for _, name, _, _ in string.Formatter().parse(section.template) if name}
        missing = sorted(wanted - set(columns))
        if missing:
            raise ConfigError(f"data.template uses column(s) {', '.join(missing)}; the data has {', '.join(columns)}")
    elif section.prompt_column not in columns:
        raise ConfigError(
            f"data.prompt_column: {section.prompt_column!r} is not a column; the data has {', '.join(columns)} "
            "(or set data.template, e.g. 'Solve: {question}')"
        )

    def shape(row: dict[str, Any]) -> dict[str, Any]:
        if section.template is not None:
            text: Any = section.template.format(**row)
        else:
            text = row[section.prompt_column]
        if isinstance(text, list):  # already chat messages
            messages = list(text)
            if section.system_prompt and not any(m.get("role") == "system" for m in messages):
                messages.insert(0, {"role": "system", "content": section.system_prompt})
            return {"prompt": messages}
        if use_chat:
            messages = [{"role": "user", "content": str(text)}]
            if section.system_prompt:
                messages.insert(0, {"role": "system", "content": section.system_prompt})
            return {"prompt": messages}
        prefix = f"{section.system_prompt}\n\n" if section.system_prompt else ""
        return {"prompt": prefix + str(text)}

    return dataset.map(shape, desc="shaping prompts")
