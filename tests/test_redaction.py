from __future__ import annotations

import pytest

from stages.lib.redaction import redact


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:s3cret@host.example/data.zip", "https://***@host.example/data.zip"),
        ("http://token@host.example:8080/a/b.tgz", "http://***@host.example:8080/a/b.tgz"),
        ("https://u:p@ss@host.example/x.zip", "https://***@host.example/x.zip"),  # an unencoded @ in the password
        ("https://b.s3.amazonaws.com/d.zip?X-Amz-Credential=AKIA%2F1&X-Amz-Signature=abc123&dl=1",
         "https://b.s3.amazonaws.com/d.zip?X-Amz-Credential=***&X-Amz-Signature=***&dl=1"),
        ("https://host.example/d.zip?token=t0k&sig=s1g", "https://host.example/d.zip?token=***&sig=***"),
        ("https://host.example/path/with@at/d.zip", "https://host.example/path/with@at/d.zip"),
        ("cats_and_dogs_filtered", "cats_and_dogs_filtered"),
    ],
)  # fmt: skip
def test_redact_hides_credentials_and_keeps_the_rest(url: str, shown: str):
    assert redact(url) == shown
    assert redact(f"error: could not download {url}: refused") == f"error: could not download {shown}: refused"
