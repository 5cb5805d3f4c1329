"""The report's captions read as sentences: the time-to-target note and what the curves figure shows."""

from __future__ import annotations


def test_captions_say_what_they_mean(compared):
    html = (compared.compare_dir / "report.html").read_text()
    assert "never reached." not in html and "a dash means it never got there" in html
    assert "<figcaption>curves.png</figcaption>" not in html
    assert "<figcaption>Loss and accuracy per epoch of every strategy</figcaption>" in html
