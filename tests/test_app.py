"""The Streamlit entry point runs and shows the landing page (AppTest: a real script run)."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]


def test_app_landing_page_runs():
    at = AppTest.from_file(str(ROOT / "app.py")).run(timeout=60)
    assert not at.exception
    assert at.title[0].value == "BeatSync"
    text = " ".join(m.value for m in at.markdown)
    assert "in sync" in text
    assert any("beatsync process" in c.value for c in at.code)
