"""Broader offline prompts: MT-Bench-shaped two-turn tasks and HumanEval-shaped doctest completions.

The first prompt set (``training.synth_prompts`` general/math/code/chinese) is a few dozen templates over a topic
list; a head trained on the model's answers to it plateaued there while the benchmark's writing and code tasks
stayed behind (its served acceptance on them was the lowest). These two builders widen the *kinds* of requests,
never their benchmark text (``benchmarks.questions`` checks the overlap):

* ``tasks``    MT-Bench's eight categories (writing, role-play, reasoning, math word problems with a twist,
               extraction from a passage, STEM, humanities, coding questions), every prompt with a second turn
               that constrains or transforms the first answer, as MT-Bench does
* ``doctest``  "complete this function" over functions whose docstrings carry ``>>>`` examples (HumanEval's
               shape), harvested from the standard library and the installed packages' pure-Python sources;
               the installed versions decide which exist, so the committed prompt file is the record
"""

from __future__ import annotations

import ast
import random
import sysconfig
from pathlib import Path

GENRES = ["blog post", "short story", "product review", "cover letter", "speech", "press release", "diary entry",
          "advertisement", "newsletter", "op-ed", "thank-you note", "travel itinerary", "recipe introduction",
          "podcast script", "movie pitch", "limerick", "sonnet", "fable", "social media thread", "museum label"]
AUDIENCES = ["teenagers", "retired engineers", "first-year students", "busy parents", "a city council",
             "tourists", "investors", "nurses", "software developers", "farmers", "children", "a book club"]
PERSONAS = ["a medieval knight", "a ship's captain in 1850", "a detective from a noir film", "a friendly robot",
            "a famous chef", "a sports coach before a final", "a wizard teaching apprentices", "a tour guide in Rome",
            "a nervous job candidate", "an astronaut on the Moon", "a grumpy librarian", "a startup founder",
            "a village doctor", "a museum curator", "a stand-up comedian", "a park ranger", "a time traveller from 2300",
            "a pirate", "a stoic philosopher", "a kindergarten teacher"]
WRITING = [
    "Write a {n}-word {g} about {t} for {a}.",
    "Compose a {g} about {t}. Keep it under {n} words and make the first sentence catchy.",
    "Draft a {g} that explains {t} to {a}, with a clear structure and a memorable ending.",
    "Write a {g} in which the narrator discovers something surprising about {t}.",
    "Write a persuasive {g} asking {a} to care about {t}.",
]
ROLEPLAY = [
    "Pretend you are {p}. Describe your thoughts on {t}.",
    "You are {p}. A visitor asks you about {t}. Answer in character.",
    "Act as {p} and give advice to {a} about {t}.",
    "Imagine you are {p} writing a letter home about {t}.",
    "Role-play as {p}: introduce yourself and explain why {t} matters to you.",
]
STEM = [
    "Explain the science behind {t}. Include one equation or number if it helps.",
    "What experiment could a student do at home to learn about {t}? Describe the steps and what to expect.",
    "Describe how engineers use {t} in practice, with two real-world examples.",
    "What are the open questions researchers still have about {t}?",
    "Explain {t} and {u}, then say which is harder to measure and why.",
]
HUMANITIES = [
    "Discuss how {t} shaped society, giving two historical examples.",
    "What can {t} teach us about human nature? Argue your view in three paragraphs.",
    "Compare how two different cultures think about {t}.",
    "Evaluate the claim that {t} did more good than harm.",
    "Describe the main schools of thought on {t} and their strongest arguments.",
]
CODING_Q = [
    "Explain the difference between {c1} and {c2} in Python, with a short code example of each.",
    "When should a programmer use {c1} instead of {c2}? Give code to illustrate.",
    "Write a Python class that models {t}, with two methods and a short usage example.",
    "Find the bug: a Python function meant to {task} returns wrong results for empty input. Write a correct version.",
    "Write a Python script that reads a CSV file of {t} data and prints a summary. Explain each part.",
]
PY_CONCEPTS = ["a list", "a tuple", "a set", "a dictionary", "a generator", "a list comprehension", "a for loop",
               "recursion", "iteration", "a class", "a dataclass", "a named tuple", "a lambda", "a regular function",
               "exceptions", "return codes", "threads", "processes", "async functions", "callbacks", "inheritance",
               "composition", "a module", "a package", "deepcopy", "copy", "is", "==", "sorted()", "list.sort()"]
CODE_TASKS = ["parse dates", "merge two dictionaries", "count words", "find duplicates", "compute an average",
              "reverse a linked list", "validate a password", "split a list into chunks", "flatten a nested list",
              "remove empty strings"]
FOLLOW_UPS = {
    "writing": ["Rewrite your previous response so that every sentence starts with the letter {L}.",
                "Now rewrite it for {a}, in a more formal tone.", "Shorten it to three sentences.",
                "Give it a title and add a closing line that asks the reader a question.",
                "Rewrite it as a poem of four lines."],
    "roleplay": ["Stay in character and answer: what is your biggest fear?",
                 "Now describe the same thing to a child, still in character.",
                 "Continue the scene: someone disagrees with you. How do you respond?"],
    "stem": ["Now explain it to {a} without any technical terms.", "Give three quiz questions about your answer, with answers.",
             "What is a common mistake people make about this, and why?"],
    "humanities": ["Now argue the opposite position.", "Summarize your answer in one sentence.",
                   "Which book or source would you recommend to learn more, and why?"],
    "coding": ["Add type hints and docstrings to your code.", "Now write two unit tests for it.",
               "What is the time complexity of your solution? Can it be improved?"],
    "reasoning": ["Explain your reasoning step by step, as if to a student.",
                  "Change one number in the problem and solve it again.", "How would you check that your answer is right?"],
    "math": ["Now solve it a second way.", "Write a similar problem with different numbers, and solve it.",
             "Explain which step is easiest to get wrong."],
    "extraction": ["Now return the same information as JSON.", "Sort the extracted items and present them as a table.",
                   "Which of the items appears most important, and why?"],
}
NAMES = ["Ava", "Ben", "Chloe", "Dan", "Ella", "Finn", "Grace", "Hugo", "Iris", "Jack", "Kim", "Leo", "Mia", "Noah",
         "Omar", "Pia", "Quinn", "Rosa", "Sam", "Tara"]
CITIES = ["Lisbon", "Oslo", "Nairobi", "Lima", "Osaka", "Toronto", "Krakow", "Hanoi", "Cairo", "Perth", "Denver", "Seville"]
ITEMS = ["laptop", "bicycle", "coffee maker", "backpack", "phone", "desk lamp", "kettle", "headphones", "tent", "camera"]


def _reasoning(rng: random.Random) -> str:
    a, b, c, d = rng.sample(NAMES, 4)
    kinds = [
        f"{a} is taller than {b}, and {b} is taller than {c}. {d} is shorter than {c}. Who is the tallest, and who is the shortest?",
        f"{a}, {b} and {c} each own one pet: a cat, a dog or a parrot. {a} does not own the dog. {b} owns the parrot. Who owns which pet?",
        f"If {rng.randint(3, 9)} machines make {rng.randint(3, 9)} widgets in {rng.randint(3, 9)} minutes, how long do {rng.randint(10, 99)} machines take to make {rng.randint(10, 99)} widgets?",
        f"{a} is {rng.randint(2, 9)} years older than {b}. In {rng.randint(2, 9)} years their ages will add up to {rng.randint(40, 90)}. How old is each now?",
        f"{a} says: '{b} is lying.' {b} says: '{c} is lying.' {c} says: '{a} and {b} are both lying.' Who tells the truth?",
        f"There are {rng.randint(3, 9)} red, {rng.randint(3, 9)} green and {rng.randint(3, 9)} blue socks in a drawer. How many must {a} take in the dark to be sure of a matching pair?",
        f"{a} walks {rng.randint(2, 9)} km north, then {rng.randint(2, 9)} km east, then {rng.randint(2, 9)} km south. How far is {a} from the start?",
    ]
    return rng.choice(kinds)


def _math_twist(rng: random.Random) -> str:
    x, y, z = rng.randint(2, 30), rng.randint(2, 30), rng.randint(2, 12)
    kinds = [
        f"The vertices of a triangle are at ({x % 7}, {y % 5}), ({x % 7 + z}, {y % 5}) and ({x % 7}, {y % 5 + z + 1}). What is its area?",
        f"A company spends ${x * 1000} in the first year and {z}% more each year after. How much does it spend over three years?",
        f"When a number is divided by {z}, the remainder is {x % z}. What is the remainder when twice the number is divided by {z}?",
        f"Find all integers n with {x} <= n <= {x + 40} that are divisible by both {z % 5 + 2} and {z % 3 + 3}.",
        f"A die is rolled twice. What is the probability that the sum is {z % 11 + 2}?",
        f"Solve the system: x + y = {x + y}, x - y = {x - y}.",
    ]
    return rng.choice(kinds)


def _extraction(rng: random.Random) -> str:
    rows = []
    for _ in range(rng.randint(3, 5)):
        rows.append(f"{rng.choice(NAMES)} from {rng.choice(CITIES)} bought a {rng.choice(ITEMS)} for "
                    f"${rng.randint(15, 900)} in {rng.choice(['March', 'May', 'July', 'October', 'December'])} "
                    f"{rng.randint(2015, 2024)} and rated it {rng.randint(1, 5)} out of 5.")
    ask = rng.choice(["Extract each person's name, city, item and price.",
                      "List the items with their ratings, from best to worst.",
                      "Which purchases cost more than $200? Give name and item.",
                      "Extract the year and month of each purchase as YYYY-MM."])
    return "Read the following records:\n" + "\n".join(rows) + "\n\n" + ask


def mt_tasks(rng: random.Random, n: int, topics: list[str]) -> list[list[str]]:
    """``n`` distinct two-turn conversations spread evenly over MT-Bench's eight categories."""
    cats = list(FOLLOW_UPS)
    out: dict[str, list[str]] = {}
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 50 * n + 1000:
            break  # fewer distinct prompts exist than asked
        cat = cats[len(out) % len(cats)]
        t, u = rng.sample(topics, 2)
        fill = dict(t=t, u=u, n=rng.choice([80, 120, 150, 200, 300]), g=rng.choice(GENRES), a=rng.choice(AUDIENCES),
                    p=rng.choice(PERSONAS), task=rng.choice(CODE_TASKS), L=rng.choice("ABCDEFGHMPSTW"))
        c1, c2 = rng.sample(PY_CONCEPTS, 2)
        fill.update(c1=c1, c2=c2)
        first = {
            "writing": lambda: rng.choice(WRITING), "roleplay": lambda: rng.choice(ROLEPLAY),
            "stem": lambda: rng.choice(STEM), "humanities": lambda: rng.choice(HUMANITIES),
            "coding": lambda: rng.choice(CODING_Q), "reasoning": lambda: _reasoning(rng),
            "math": lambda: _math_twist(rng), "extraction": lambda: _extraction(rng),
        }[cat]().format(**fill)
        if first not in out:
            out[first] = [first, rng.choice(FOLLOW_UPS[cat]).format(**fill)]
    return [out[k] for k in sorted(out)]


SKIPPED_DIRS = {"test", "tests", "testing", "idlelib", "lib2to3", "__pycache__", "_vendor", "vendored"}


def module_trees(root: Path, skipped_dirs: set[str]):
    """(path parts under root, parsed module) for every readable ``*.py`` below root, in path order.

    Both code prompt builders harvest functions this way; the order is part of what makes their prompt files
    reproducible, and a file that does not parse is left out rather than failing the run."""
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).parts
        if set(parts) & skipped_dirs:
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
            continue
        yield parts, tree


def doctest_functions(rng: random.Random, n: int, roots: list[Path] | None = None) -> list[str]:
    """Signature + docstring of public functions whose docstring shows ``>>>`` examples (1-8 of them)."""
    return _harvest(rng, n, roots, lambda doc: 60 <= len(doc) <= 800 and 1 <= doc.count(">>>") <= 8)


def docstring_functions(rng: random.Random, n: int, roots: list[Path] | None = None) -> list[str]:
    """Signature + prose docstring (no ``>>>``; 120-800 characters) of public functions: HumanEval prompts without
    examples. Disjoint from ``doctest_functions`` by construction, and a far larger pool (every installed package)."""
    return _harvest(rng, n, roots, lambda doc: 120 <= len(doc) <= 800 and ">>>" not in doc)


def _harvest(rng: random.Random, n: int, roots: list[Path] | None, keep) -> list[str]:
    """Public plain functions whose docstring passes ``keep``, from stdlib and site-packages, no package over n/6."""
    if roots is None:
        paths = sysconfig.get_paths()
        roots = sorted({Path(paths["stdlib"]), Path(paths["purelib"])})
    by_package: dict[str, set[str]] = {}
    for root in roots:
        for parts, tree in module_trees(root, SKIPPED_DIRS):
            for node in ast.walk(tree):
                if not isinstance(node, ast.FunctionDef) or node.name.startswith("_"):
                    continue
                if node.args.args and node.args.args[0].arg in ("self", "cls"):
                    continue  # HumanEval's problems are plain functions
                doc = ast.get_docstring(node)
                if not doc or not keep(doc):
                    continue
                first, *rest = doc.splitlines()
                # indented as in a source file (get_docstring dedents it), closing quotes on their own line
                body = "\n".join([first, *("    " + line if line.strip() else "" for line in rest)]) + "\n    "
                node.body = [ast.Expr(ast.Constant(" " + body if body.startswith('"') else body))]
                node.decorator_list = []
                src = ast.unparse(node)
                if len(src) < 1200:
                    by_package.setdefault(parts[0].removesuffix(".py"), set()).add(src)
    # no package more than a sixth of the set (sympy alone has a third of the candidates)
    cap = max(1, n // 6)
    found = []
    for pkg in sorted(by_package):
        srcs = sorted(by_package[pkg])
        rng.shuffle(srcs)
        found += srcs[:cap]
    rng.shuffle(found)
    return found[:n]
