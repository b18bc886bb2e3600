from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return REPO / "tests" / "fixtures"


@pytest.fixture(scope="session")
def zoo(tmp_path_factory):
    """The bad-input zoo (tests/zoo.py), built once per session (~10 s of one core)."""
    from needs import have_espeak, have_ffmpeg

    if not have_ffmpeg():
        pytest.skip("needs ffmpeg")
    if not have_espeak():
        pytest.skip("needs libespeak-ng")
    from zoo import build_zoo

    return build_zoo(tmp_path_factory.mktemp("zoo"))


@pytest.fixture(scope="module")
def speech():
    """tests/needs.py's four GRID sentences spoken by four espeak-ng voices (16 kHz float32)."""
    from needs import have_espeak, spoken_sentences

    if not have_espeak():
        pytest.skip("needs libespeak-ng")
    return spoken_sentences()


@pytest.fixture
def one_thread():
    """One torch thread for the test: on a shared 2-core machine two spinning OpenMP threads
    make small models (GAN steps, DDP workers) several times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def live_models(request, tmp_path_factory):
    """tests/tinymodels.py's live models (a SynthGRID clip, a tiny streaming LTBS checkpoint (2 steps), an offline
    one, a tiny HiFi-GAN (1 step)), built once per test module in a folder named after it (test_live: live)."""
    from tinymodels import tiny_live_models

    return tiny_live_models(tmp_path_factory.mktemp(request.path.stem.removeprefix("test_")))
