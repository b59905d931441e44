from __future__ import annotations

import sys
from pathlib import Path

import pytest

TRAINER_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TRAINER_ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from synthetic import write_job_datasets  # noqa: E402


@pytest.fixture(scope="session")
def job_datasets(tmp_path_factory) -> dict:
    return write_job_datasets(tmp_path_factory.mktemp("datasets"))
