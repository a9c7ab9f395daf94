"""The README's example is the example bot the harness runs, word for word."""

import re

from conftest import PACKAGE


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", markdown, flags=re.S | re.M)


def test_the_readme_example_is_examples_bot_py_verbatim() -> None:
    readme = (PACKAGE / "README.md").read_text()
    bot = (PACKAGE / "examples" / "bot.py").read_text()
    assert bot in python_blocks(readme)  # one of its blocks (the first shows the lines a bot adds)
