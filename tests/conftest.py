from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
EXAMPLES = REPO / "examples" / "subsets.jsonl"


@pytest.fixture(scope="session")
def default_backbone():
    """The real default encoder and tokenizer (offline), loaded once."""
    from cactus.encoder import load_backbone

    model, tokenizer = load_backbone("all-MiniLM-L6-v2")
    return model.eval(), tokenizer
