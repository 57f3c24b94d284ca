"""training.synth_prompts: offline training prompts that distill can read and that never reuse benchmark text."""

from __future__ import annotations

import ast
import re

from benchmarks.questions import bundled_paths, check_no_overlap
from training.prompts import parse_input_spec, read_prompts
from training.synth_prompts import main


def test_prompt_files_are_deterministic_readable_and_disjoint_from_the_benchmarks(tmp_path, capsys):
    args = ["--general", "120", "--math", "60", "--code", "40", "--chinese", "50", "--seed", "3"]
    assert main([str(tmp_path / "a"), *args]) == 0
    assert main([str(tmp_path / "b"), *args]) == 0
    files = {c: tmp_path / "a" / f"{c}.jsonl" for c in ("general", "math", "code", "chinese")}
    for c, f in files.items():
        assert f.read_bytes() == (tmp_path / "b" / f.name).read_bytes(), c  # same seed, same prompts
    assert main([str(tmp_path / "c"), *args[:-1], "4"]) == 0
    assert (tmp_path / "c" / "general.jsonl").read_bytes() != files["general"].read_bytes()

    convs = {c: read_prompts(parse_input_spec(str(f))) for c, f in files.items()}
    assert {c: len(v) for c, v in convs.items()} == {"general": 120, "math": 60, "code": 40, "chinese": 50}
    for c, v in convs.items():
        assert all(x.category == c and len(x.user_turns) in ((1, 2) if c == "general" else (1,)) for x in v)
        assert len({x.user_turns[0] for x in v}) == len(v)  # no duplicates
    two = sum(len(x.user_turns) == 2 for x in convs["general"])
    assert 0.15 * 120 < two < 0.45 * 120  # about a third get MT-Bench's second turn, built on the first answer
    assert all(re.search(r"[\u4e00-\u9fff]", x.user_turns[0]) for x in convs["chinese"])
    blocks = [re.search(r"```python\n(.*)\n```", x.user_turns[0], re.S) for x in convs["code"]]
    assert sum(b is not None for b in blocks) > 0  # standard-library functions, HumanEval framing
    for b in blocks:
        if b is not None:
            ast.parse(b.group(1))  # the signature + docstring is valid Python
    mixed = read_prompts(parse_input_spec(str(tmp_path / "a" / "mixed.jsonl")))
    assert sorted(x.user_turns[0] for x in mixed) == sorted(x.user_turns[0] for v in convs.values() for x in v)
    first = [x.category for x in mixed[:27]]  # 270 prompts: the first tenth keeps each category's share
    assert {c: first.count(c) for c in convs} == {"general": 12, "math": 6, "code": 4, "chinese": 5}
    check_no_overlap(list(files.values()), bundled_paths())  # raises if a benchmark prompt leaked in


def test_negative_count_is_refused(tmp_path, capsys):
    import pytest

    with pytest.raises(SystemExit):
        main([str(tmp_path), "--math", "-1"])
    assert "counts must be >= 0: math" in capsys.readouterr().err
    assert not tmp_path.joinpath("math.jsonl").exists()


def test_second_set_tasks_and_doctests_leave_the_first_set_alone(tmp_path, monkeypatch):
    import json

    from training import synth_tasks

    # a source tree of our own, so the test does not parse all of site-packages (what the real run harvests)
    src = tmp_path / "src" / "pkg"
    src.mkdir(parents=True)
    src.joinpath("mod.py").write_text(
        "def add(a, b):\n    '''Add two numbers, which is what this module is for.\n\n    >>> add(1, 2)\n    3\n    '''\n"
        "    return a + b\n\n"
        "class K:\n    def method(self, x):\n        '''A method with an example, which HumanEval never has.\n\n"
        "        >>> K().method(1)\n        1\n        '''\n\n"
        "def nodoc(x):\n    '''Long enough docstring but no example at all, so it is not a doctest prompt.'''\n"
    )
    monkeypatch.setattr(synth_tasks.sysconfig, "get_paths", lambda: {"stdlib": str(tmp_path / "src"), "purelib": str(tmp_path / "src")})
    out = tmp_path / "p"
    assert main([str(out), "--general", "5", "--math", "0", "--code", "0", "--chinese", "0"]) == 0
    first = (out / "general.jsonl").read_bytes()
    args = ["--general", "0", "--math", "0", "--code", "0", "--chinese", "0", "--tasks", "40", "--doctest", "5"]
    assert main([str(out), *args, "--mixed-name", "broad.jsonl"]) == 0
    assert (out / "general.jsonl").read_bytes() == first and (out / "mixed.jsonl").exists()  # first set untouched
    tasks = [json.loads(line) for line in open(out / "tasks.jsonl")]
    assert len(tasks) == 40 and all(len(t["turns"]) == 2 for t in tasks)  # MT-Bench's two turns, every one
    assert len({t["turns"][0] for t in tasks}) == 40
    doctests = [json.loads(line)["turns"][0] for line in open(out / "doctest.jsonl")]
    assert len(doctests) == 1  # only the plain function with a >>> example; not the method, not the bare docstring
    code = re.search(r"```python\n(.*)\n```", doctests[0], re.S).group(1)
    assert ast.parse(code) and "    >>> add(1, 2)\n    3\n" in code  # indented as in a source file
    broad = read_prompts(parse_input_spec(str(out / "broad.jsonl")))
    assert len(broad) == 41 and {c.category for c in broad} == {"tasks", "doctest"}
    check_no_overlap([out / "tasks.jsonl", out / "doctest.jsonl"], bundled_paths())


def test_docstring_prompts_take_prose_docstrings_only(tmp_path, monkeypatch):
    import json

    from training import synth_tasks

    src = tmp_path / "src" / "pkg"
    src.mkdir(parents=True)
    prose = "Return the running totals of a list of numbers. " * 3
    src.joinpath("mod.py").write_text(
        f"def totals(xs):\n    '''{prose}'''\n    return xs\n\n"
        "def add(a, b):\n    '''Add two numbers, which is what this module is for, and long enough for the prose "
        "builder if it did not carry an example.\n\n    >>> add(1, 2)\n    3\n    '''\n\n"
        f"class K:\n    def method(self, x):\n        '''{prose}'''\n\n"
        "def short(x):\n    '''Too short a docstring to say what a function should do.'''\n"
    )
    monkeypatch.setattr(synth_tasks.sysconfig, "get_paths", lambda: {"stdlib": str(tmp_path / "src"), "purelib": str(tmp_path / "src")})
    out = tmp_path / "p"
    args = ["--general", "0", "--math", "0", "--code", "0", "--chinese", "0", "--docstring", "5"]
    assert main([str(out), *args, "--mixed-name", "broad2.jsonl"]) == 0
    got = [json.loads(line)["turns"][0] for line in open(out / "docstring.jsonl")]
    assert len(got) == 1 and "def totals(xs):" in got[0] and ">>>" not in got[0]  # not add, the method, short
    assert ast.parse(re.search(r"```python\n(.*)\n```", got[0], re.S).group(1))
    check_no_overlap([out / "docstring.jsonl"], bundled_paths())


def test_every_count_zero_or_a_category_name_as_mixed_name_is_refused(tmp_path, capsys):
    import pytest

    zero = ["--general", "0", "--math", "0", "--code", "0", "--chinese", "0"]
    with pytest.raises(SystemExit):
        main([str(tmp_path), *zero])
    assert "every count is 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--mixed-name", "math.jsonl"])
    assert "--mixed-name 'math.jsonl'" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_code_roots_replace_the_installed_trees_and_are_checked(tmp_path, monkeypatch, capsys):
    import json

    import pytest

    from training import synth_tasks

    def tree(root, name, body):
        (root / name).mkdir(parents=True)
        (root / name / "mod.py").write_text(body)

    example = "    '''{what}, a function whose docstring shows how it is called.\n\n    >>> {call}\n    3\n    '''\n"
    installed, wheels = tmp_path / "site", tmp_path / "wheels"
    tree(installed, "old", "def add(a, b):\n" + example.format(what="Add two numbers", call="add(1, 2)"))
    tree(wheels, "newpkg", "def plus(a, b):\n" + example.format(what="Sum two numbers", call="plus(1, 2)"))
    monkeypatch.setattr(synth_tasks.sysconfig, "get_paths", lambda: {"stdlib": str(installed), "purelib": str(installed)})
    zero = ["--general", "0", "--math", "0", "--code", "0", "--chinese", "0"]
    out = tmp_path / "p"
    assert main([str(out), *zero, "--doctest", "5", "--mixed-name", "code3.jsonl", "--code-roots", str(wheels)]) == 0
    got = [json.loads(line)["turns"][0] for line in open(out / "doctest.jsonl")]
    assert len(got) == 1 and "def plus(a, b):" in got[0]  # the root's function, not the installed tree's
    assert main([str(tmp_path / "q"), *zero, "--doctest", "5", "--mixed-name", "code3.jsonl"]) == 0
    assert "def add(a, b):" in (tmp_path / "q" / "doctest.jsonl").read_text()  # without it: the installed trees

    with pytest.raises(SystemExit):
        main([str(tmp_path / "r"), *zero, "--doctest", "5", "--code-roots", str(tmp_path / "nowhere")])
    assert f"--code-roots: not a directory: {tmp_path / 'nowhere'}" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(tmp_path / "r"), "--code-roots", str(wheels)])  # the default counts build no harvested category
    assert "--code-roots is read by --doctest and --docstring only" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
