"""Training prompts that exist offline, for self-distillation when no prompt dataset can be downloaded.

Self-distillation only needs prompts that look like what the model will be asked at serving time: the answers
come from the model itself. With no Hugging Face hub here, this writes four prompt files (Spec-Bench ``turns``
format) from material that ships with Python and this module, in the shape of the benchmark tasks but never
their text (``benchmarks.questions`` checks the overlap before a benchmark runs):

* ``general``  writing / explanation / advice / comparison / role-play templates over a topic list; about a
               third get a second user turn (rewrite / summarise / extend), MT-Bench's two-turn shape
* ``math``     arithmetic word problems with seeded random numbers (GSM8K-like, answers not needed)
* ``code``     "complete this function" from the signatures and docstrings of the Python standard library's
               own pure-Python functions and public methods (HumanEval's framing), plus short "write a
               function that" tasks
* ``chinese``  Chinese instruction templates over a Chinese topic list
* ``tasks``, ``doctest``  a broader second set (``training.synth_tasks``): MT-Bench-shaped two-turn tasks and
               HumanEval-shaped doctest completions; off by default (``--mixed-name`` keeps the sets apart)
* ``docstring``  HumanEval-shaped completions from prose docstrings (no examples) of every installed package's
               public functions: a larger pool than ``doctest``, disjoint from it; off by default
               (``--code-roots`` harvests both from other source trees, e.g. unzipped wheels, once the installed
               ones are used up)

Also writes ``mixed.jsonl``: all four interleaved in proportion, so ``training.distill --limit N`` (or stopping a
run early; distill resumes) keeps the category mix of the whole set. Deterministic for a given ``--seed``. Online users should prefer real prompt sets (``hf:`` inputs of distill).
"""

from __future__ import annotations

import argparse
import ast
import json
import random
import sysconfig
from pathlib import Path

from training import synth_tasks
from training.files import atomic_write

TOPICS = """photosynthesis|the water cycle|black holes|volcanoes|plate tectonics|the immune system|vaccines|climate change
|renewable energy|solar panels|electric cars|the printing press|the Roman Empire|ancient Egypt|the Renaissance
|the Industrial Revolution|World War I|the Cold War|the moon landing|the internet|social media|smartphones
|artificial intelligence|machine learning|cloud computing|cybersecurity|cryptography|blockchain|quantum computing
|the stock market|inflation|interest rates|budgeting|saving for retirement|starting a small business|marketing
|job interviews|remote work|time management|public speaking|learning a new language|reading habits|sleep
|healthy eating|running|yoga|meditation|stress|friendship|parenting|pets|dogs|cats|gardening|cooking pasta
|baking bread|coffee|tea|chocolate|travel in Japan|visiting Paris|hiking|camping|the ocean|coral reefs|rainforests
|deserts|bees|birds|whales|dinosaurs|evolution|DNA|the human brain|the heart|antibiotics|nutrition|recycling
|plastic pollution|urban planning|public transport|bicycles|architecture|music theory|jazz|classical music
|painting|photography|film making|poetry|Shakespeare|mythology|philosophy|ethics|democracy|elections|human rights
|the French Revolution|the Silk Road|the history of mathematics|prime numbers|probability|statistics|geometry
|algebra|the speed of light|gravity|magnetism|electricity|batteries|semiconductors|rockets|satellites|Mars
|the solar system|weather forecasting|earthquakes|tsunamis|agriculture|water scarcity|chess|football|basketball
|the Olympic Games|video games|board games|writing a novel|journalism|libraries|museums|online learning
|teamwork|leadership|negotiation|customer service|email etiquette|open source software|databases|operating systems
|computer networks|web browsers|programming languages|version control|testing software|robots|3D printing
|nuclear energy|wind turbines|the history of medicine|the microscope|germs and hygiene|the human skeleton|muscles
|allergies|diabetes|first aid|mental health|habits|motivation|procrastination|creativity|curiosity|memory
|the scientific method|critical thinking|logic puzzles|the history of writing|the alphabet|translation|dialects
|sign language|the history of money|banks|credit cards|taxes|insurance|renting an apartment|buying a house
|moving to a new city|wedding planning|birthday parties|volunteering|charity|minimalism|fashion|textiles
|the history of clothing|perfume|cosmetics|architecture in ancient Greece|castles|bridges|skyscrapers|tunnels
|railways|airplanes|air traffic control|ships|submarines|the Titanic|lighthouses|maps|navigation|GPS
|astronomy|telescopes|comets|the Big Bang|the Milky Way|exoplanets|the International Space Station|time zones
|calendars|clocks|the seasons|rain|snow|hurricanes|tornadoes|glaciers|rivers|lakes|mountains|caves|islands
|soil|fertilizers|wheat|rice|potatoes|fruit trees|forests and wildfires|endangered species|zoos|insects|ants
|spiders|octopuses|sharks|penguins|elephants|horses|wolves|migration of birds|fungi|bacteria|viruses
|the history of computers|spreadsheets|search engines|email|passwords|privacy online|misinformation|podcasts
|television|radio|newspapers|advertising|brand design|typography|user interface design|video editing
|animation|comic books|theatre|opera|dance|rock music|hip hop|folk songs|musical instruments|the piano|the guitar
|orchestras|sculpture|pottery|knitting|woodworking|home repair|cleaning|cooking rice|soup|salads|breakfast
|vegetarian diets|food preservation|fermentation|cheese|spices|street food|restaurants|tipping|etiquette
|table manners|gift giving|apologizing|conflict resolution|listening skills|giving feedback|mentoring|studying for exams
|homework|school uniforms|university life|scholarships|internships|career changes|retirement|grandparents|siblings""".replace(
    "\n", ""
).split("|")

GENERAL = [
    "Explain {t} to a ten-year-old.",
    "Write a short blog post about {t}.",
    "What are the three most important facts about {t}? Explain each briefly.",
    "Give me five practical tips related to {t}.",
    "Write a persuasive paragraph arguing that everyone should learn about {t}.",
    "Compare {t} and {u}: how are they similar and how are they different?",
    "Write a short story in which {t} plays a central role.",
    "Imagine you are a university professor. Give a short introductory lecture on {t}.",
    "What are common misconceptions about {t}, and what is actually true?",
    "Summarize the history of {t} in one paragraph.",
    "Write a poem about {t}.",
    "Draft an email to a colleague proposing a workshop on {t}.",
    "What questions would you ask an expert on {t}? List five and explain why.",
    "Describe the pros and cons of {t}.",
    "How might {t} change in the next twenty years?",
    "Create a lesson plan outline for teaching {t} to high school students.",
    "Write a FAQ with four questions and answers about {t}.",
    "Explain {t} in exactly three paragraphs.",
    "Describe a typical day of someone whose job involves {t}.",
    "Write a dialogue between a student and a teacher about {t}.",
    "What would a beginner need to know before getting into {t}? Make a checklist.",
    "Write a product description for an imaginary gadget related to {t}.",
    "Give a balanced opinion: is {t} overrated or underrated?",
    "Write a news article headline and a short article about a discovery related to {t}.",
    "Explain how {t} is connected to {u}.",
    "Tell me an interesting story from history about {t}.",
    "Write a haiku and a limerick about {t}.",
    "List the key terms someone should know about {t}, with a one-line definition for each.",
    "Write a motivational speech that mentions {t}.",
    "What are the ethical questions raised by {t}?",
    "Plan a one-week study schedule for learning the basics of {t}.",
    "Write a letter to a friend explaining why you became interested in {t}.",
    "Describe {t} using an analogy that a child would understand.",
    "Summarize the arguments for and against investing public money in {t}.",
    "Write a travel guide entry for a museum dedicated to {t}.",
    "You are a tour guide. Introduce {t} to a group of visitors.",
]

# Second user turns, in MT-Bench's two-turn shape; the answer to them builds on the model's own first answer.
FOLLOW_UPS = [
    "Now rewrite your answer in half the length.",
    "Can you make it more formal?",
    "Rewrite it for a five-year-old.",
    "Summarize your previous answer in one sentence.",
    "Turn your answer into a bulleted list.",
    "Add a concrete example to your answer.",
    "What is the weakest point of your answer, and how would you fix it?",
    "Now write a title for it.",
    "Translate the key idea of your answer into a short tweet.",
    "Give me two follow-up questions I could ask about this.",
    "Rewrite your answer in the style of a pirate.",
    "Now explain the same thing to an expert.",
]
FOLLOW_UP_SHARE = 0.3  # share of general prompts that get a second turn

CODE_TASKS = """reverse a string without using slicing|count the vowels in a string|check whether a number is prime
|return the n-th Fibonacci number|merge two sorted lists into one sorted list|remove duplicates from a list while keeping order
|find the second largest number in a list|check whether a string is a palindrome|flatten a nested list
|compute the greatest common divisor of two integers|convert a Roman numeral to an integer|count word frequencies in a text
|rotate a list by k positions|transpose a matrix given as a list of lists|check whether two strings are anagrams
|return all subsets of a list|compute the running sum of a list|find the longest common prefix of a list of strings
|validate that parentheses in a string are balanced|convert Celsius to Fahrenheit for a list of values
|group a list of words by their first letter|implement binary search on a sorted list|compute the factorial of n iteratively
|return the indices of two numbers that add up to a target|chunk a list into pieces of size n|capitalize every word in a sentence
|find the most common element in a list|compute the dot product of two vectors|parse a CSV line into fields
|sum the digits of an integer|convert an integer to binary without bin()|find all prime numbers below n
|count the lines, words and characters in a text|check whether a year is a leap year|compute the median of a list
|find the longest word in a sentence|remove all whitespace from a string|convert a dictionary into a list of pairs sorted by value
|compute the moving average of a list with window k|find the missing number in a list from 1 to n
|check whether a list is sorted|interleave two lists|compute compound interest|convert snake_case to camelCase
|find the intersection of two lists|count the occurrences of each character|implement a stack with push and pop
|implement a queue using two stacks|compute the power set size of a set|return the nth triangular number
|check whether a number is a perfect square|encode a string with run-length encoding|decode a run-length encoded string
|validate an email address with simple rules|compute the Levenshtein distance between two strings
|find the maximum subarray sum|generate Pascal's triangle up to n rows|shuffle a list with a given seed
|compute the average word length of a sentence|count the islands in a grid of 0s and 1s""".replace("\n", "").split("|")

CODE_TEMPLATES = [
    "Write a Python function to {t}. Include a docstring and a short example.",
    "Write a Python function that can {t}, then explain its time complexity.",
    "In Python, how would you {t}? Show the code and a test.",
    "Write a Python function to {t}, with type hints and a few assert-based tests.",
    "Explain step by step how to {t} in Python, then give the code.",
    "Write two different Python implementations to {t} and compare them.",
]

CODE_HEADER = "Complete the following Python function. Reply with the full function in a Python code block.\n\n```python\n{src}\n```"

MATH = [
    ("A shop sells pens for ${a} each and notebooks for ${b} each. Lena buys {c} pens and {d} notebooks. How much does she pay?", {}),
    ("A car travels {a0} kilometres in {c} hours. At the same speed, how far does it travel in {d} hours?", {}),
    ("Sam has {a0} apples. He gives {c} to each of his {d} friends. How many apples does he have left, if he can?", {}),
    ("A rectangle is {c} metres long and {d} metres wide. What are its area and perimeter?", {}),
    ("A class has {a0} students and {c} of them are absent. What percentage of the class is present?", {}),
    ("A recipe needs {c} eggs for {d} people. How many eggs are needed for {a} people?", {}),
    ("Anna saves ${c} every week. How many weeks does she need to save ${a0}?", {}),
    ("A tank holds {a0} litres and leaks {c} litres per hour. How long until it is empty?", {}),
    ("The price of a jacket is ${a0}. It is discounted by {c}%. What is the new price?", {}),
    ("Three friends share a bill of ${a0} equally and add a {c}% tip. How much does each pay?", {}),
    ("A number multiplied by {c} and then increased by {d} gives {e}. What is the number?", {}),
    ("A train leaves at {c}:00 and arrives {d} hours and {b} minutes later. When does it arrive?", {}),
    ("Solve for x: {c}x + {d} = {e}.", {}),
    ("What is the sum of all integers from 1 to {a0}?", {}),
    ("A bag has {c} red and {d} blue marbles. What is the probability of drawing a red marble?", {}),
    ("A farmer has {a0} chickens and {c} cows. How many legs are there in total?", {}),
    ("Tom is {c} years old. His father is {d} times as old. How old will his father be in {b} years?", {}),
    ("A worker earns ${a} per hour and works {c} hours a day for {d} days. How much does the worker earn?", {}),
    ("A pizza is cut into {c} slices. {d} people eat {b} slices in total. What fraction of the pizza is left, if any?", {}),
    ("What is {c}% of {a0}?", {}),
    ("A cyclist rides at {c} km/h for {d} hours and then at {b} km/h for {c} hours. What is the total distance?", {}),
    ("Find the average of {a}, {b}, {c}, {d} and {e}.", {}),
    ("A store had {a0} items. It sold {c} items a day for {d} days. How many items remain?", {}),
    ("If {c} workers build a wall in {d} days, how long would {e} workers take, at the same rate?", {}),
    ("A square has a perimeter of {e} cm. What is its area?", {}),
    ("Is {e} a prime number? Explain.", {}),
    ("What is the least common multiple of {c} and {d}?", {}),
    ("A savings account pays {c}% simple interest per year. How much interest does ${a0} earn in {d} years?", {}),
    ("Maria reads {b} pages a day. How many days will she need to finish a book of {a0} pages?", {}),
    ("The ratio of boys to girls in a club is {c}:{d}. If there are {e} boys, how many girls are there?", {}),
]

ZH_TOPICS = """春节|中秋节|长江|黄河|熊猫|茶文化|中国书法|京剧|唐诗|宋词|故宫|丝绸之路|高铁|移动支付|人工智能|环境保护|垃圾分类
|健康饮食|运动健身|学习方法|时间管理|读书|旅游|家庭教育|城市交通|互联网|手机|气候变化|太阳能|农业|中医|围棋|足球|音乐|电影|绘画
|科学研究|航天|月球|海洋|森林|动物保护|友谊|工作面试|创业|理财|睡眠|咖啡|饺子|火锅|熊猫保护|儿童教育|老年生活|网络安全|编程
|长城|西湖|黄山|泰山|兵马俑|四大发明|造纸术|印刷术|指南针|火药|孔子|李白|杜甫|红楼梦|西游记|三国演义|水浒传|汉字
|普通话|方言|端午节|元宵节|清明节|国庆节|生日|婚礼|毕业|考试|高考|大学生活|留学|外卖|快递|网购|短视频|直播|电子游戏
|篮球|乒乓球|游泳|跑步|太极拳|武术|书法练习|剪纸|风筝|瓷器|丝绸|米饭|面条|包子|月饼|粽子|水果|蔬菜|早餐|环保出行
|共享单车|地铁|机场|天气|台风|地震|雾霾|节约用水|植树|垃圾处理|城市化|乡村生活|人口老龄化|志愿服务|诚信|孝顺""".replace(
    "\n", ""
).split("|")

ZH = [
    "请简单介绍一下{t}。",
    "写一篇关于{t}的短文。",
    "关于{t}，有哪些常见的误解？",
    "请给出三条关于{t}的建议，并分别解释。",
    "用通俗的语言向小学生解释{t}。",
    "比较{t}和{u}的异同。",
    "写一首关于{t}的小诗。",
    "{t}对现代生活有什么影响？",
    "如果你是一名老师，你会怎样讲解{t}？",
    "请列出与{t}有关的五个关键词，并解释每一个。",
    "请写一段关于{t}的演讲稿开头。",
    "{t}的优点和缺点分别是什么？",
    "给一位外国朋友介绍{t}。",
    "请用三句话概括{t}。",
    "关于{t}，请写一个小故事。",
    "如果要写一篇关于{t}的论文，你会列出怎样的提纲？",
    "请解释{t}与{u}之间的联系。",
    "为什么很多人关心{t}？",
    "请写一封信，向朋友推荐{t}。",
    "请以问答的形式介绍{t}，写出三个问题和答案。",
    "未来十年，{t}可能会有哪些变化？",
    "请用一个比喻来解释{t}。",
]


def _templated(rng: random.Random, n: int, templates: list[str], topics: list[str]) -> list[str]:
    """Distinct template × topic prompts; at most as many as exist (templates with ``{u}`` take a second topic)."""
    t = len(topics)
    n = min(n, sum(t * (t - 1) if "{u}" in tpl else t for tpl in templates))
    out = set()
    while len(out) < n:
        a, b = rng.sample(topics, 2)
        out.add(rng.choice(templates).format(t=a, u=b))
    return sorted(out)


def _general(rng: random.Random, n: int) -> list[str]:
    return _templated(rng, n, GENERAL, TOPICS)


def _with_follow_ups(rng: random.Random, prompts: list[str]) -> list[list[str]]:
    """Turn lists: about FOLLOW_UP_SHARE of the prompts get a second user turn (MT-Bench's two-turn shape)."""
    return [[p, rng.choice(FOLLOW_UPS)] if rng.random() < FOLLOW_UP_SHARE else [p] for p in prompts]


def _chinese(rng: random.Random, n: int) -> list[str]:
    return _templated(rng, n, ZH, ZH_TOPICS)


def _math(rng: random.Random, n: int) -> list[str]:
    out = set()
    while len(out) < n:
        tpl, _ = rng.choice(MATH)
        c, d = rng.randint(2, 12), rng.randint(2, 9)
        vals = dict(a=rng.randint(3, 40), a0=rng.randint(2, 30) * c * d, b=rng.randint(5, 55), c=c, d=d, e=c * rng.randint(2, 20) + d)
        out.add(tpl.format(**vals) + rng.choice(["", " Explain your steps.", " Show your work."]))
    return sorted(out)


SKIPPED_STDLIB_DIRS = {"site-packages", "test", "tests", "idlelib", "lib2to3", "__pycache__"}


def stdlib_functions(limit: int, rng: random.Random) -> list[str]:
    """Signature + docstring of public module-level functions in the standard library's pure-Python modules."""
    root = Path(sysconfig.get_paths()["stdlib"])
    found = []
    for _, tree in synth_tasks.module_trees(root, SKIPPED_STDLIB_DIRS):
        methods = [m for c in tree.body if isinstance(c, ast.ClassDef) and not c.name.startswith("_") for m in c.body]
        for node in tree.body + methods:
            if not isinstance(node, ast.FunctionDef) or node.name.startswith("_"):
                continue
            doc = ast.get_docstring(node)
            if not doc or len(doc) < 40 or len(doc) > 600:
                continue
            node.body = [ast.Expr(ast.Constant(doc))]
            node.decorator_list = []
            src = ast.unparse(node)
            if len(src) < 900:
                found.append(src)
    rng.shuffle(found)
    return found[:limit]


def _code(rng: random.Random, n: int) -> list[str]:
    """Mostly function completion (the benchmark's framing); "write a function" tasks take at most a quarter."""
    tasks = [tpl.format(t=t) for t in CODE_TASKS for tpl in CODE_TEMPLATES]
    funcs = [CODE_HEADER.format(src=s) for s in stdlib_functions(n - min(len(tasks), n // 4), rng)]
    tasks = rng.sample(tasks, min(len(tasks), n - len(funcs)))
    return sorted(set(funcs + tasks))


def _tasks(rng: random.Random, n: int) -> list[list[str]]:
    return synth_tasks.mt_tasks(rng, n, TOPICS)


def _doctest(rng: random.Random, n: int, roots: list[Path] | None = None) -> list[str]:
    return [CODE_HEADER.format(src=s) for s in synth_tasks.doctest_functions(rng, n, roots)]


def _docstring(rng: random.Random, n: int, roots: list[Path] | None = None) -> list[str]:
    return [CODE_HEADER.format(src=s) for s in synth_tasks.docstring_functions(rng, n, roots)]


BUILDERS = {"general": _general, "math": _math, "code": _code, "chinese": _chinese, "tasks": _tasks, "doctest": _doctest,
            "docstring": _docstring}
DEFAULT_COUNTS = {"general": 800, "math": 300, "code": 300, "chinese": 300, "tasks": 0, "doctest": 0, "docstring": 0}
HARVESTED = ("doctest", "docstring")  # the builders that read source trees (--code-roots)


def _write_jsonl(path: Path, lines: list[str]) -> None:
    atomic_write(path, "".join(lines))


def interleave(per_cat: dict[str, list[str]]) -> list[str]:
    """Round-robin in proportion: at every point, each category has used about the same share of its lines."""
    used = dict.fromkeys(per_cat, 0)
    out = []
    for _ in range(sum(map(len, per_cat.values()))):
        cat = min((c for c in per_cat if used[c] < len(per_cat[c])), key=lambda c: used[c] / len(per_cat[c]))
        out.append(per_cat[cat][used[cat]])
        used[cat] += 1
    return out


def prompt_turns(paths: list[Path]) -> list[list[str]]:
    """The user turns of every prompt of earlier prompt files (JSONL in this module's format, optionally .gz)."""
    import gzip

    out = []
    for path in paths:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rt", encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                try:
                    turns = json.loads(line)["turns"]
                    turns[0]  # every prompt has a first turn (IndexError, TypeError otherwise)
                except (json.JSONDecodeError, KeyError, IndexError, TypeError):
                    raise SystemExit(f"error: --exclude {path}:{n}: expected a JSON object with 'turns'") from None
                out.append(turns)
    return out


def first_turns(paths: list[Path]) -> set[str]:
    """First user turns of earlier prompt files (JSONL in this module's format, optionally .gz)."""
    return {turns[0] for turns in prompt_turns(paths)}


def write(
    out_dir: Path, counts: dict[str, int], seed: int, mixed_name: str = "mixed.jsonl", exclude: set[str] = frozenset(),
    code_roots: list[Path] | None = None,
) -> dict[str, int]:
    """One file per category asked for (a count of 0 writes none, so a second set leaves the first one's files),
    plus ``mixed_name`` interleaving them. Prompts whose first turn is in ``exclude`` (an earlier set's) are dropped.
    ``code_roots``: the source trees the doctest/docstring builders harvest (default: the installed stdlib and
    site-packages, whose pool the earlier sets used up)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    per_cat = {}
    for cat, n in counts.items():
        if n == 0:
            continue
        rng = random.Random(f"{seed}:{cat}")
        prompts = BUILDERS[cat](rng, n, code_roots) if cat in HARVESTED else BUILDERS[cat](rng, n)
        prompts = [q for q in prompts if (q[0] if isinstance(q, list) else q) not in exclude]
        random.Random(f"{seed}:{cat}:order").shuffle(prompts)
        if cat == "general":
            turns = _with_follow_ups(random.Random(f"{seed}:{cat}:turns"), prompts)
        else:  # tasks come with their second turn already
            turns = [p if isinstance(p, list) else [p] for p in prompts]
        per_cat[cat] = [
            json.dumps({"question_id": f"synth-{cat}-{i}", "category": cat, "turns": t}, ensure_ascii=False) + "\n"
            for i, t in enumerate(turns)
        ]
        _write_jsonl(out_dir / f"{cat}.jsonl", per_cat[cat])
    _write_jsonl(out_dir / mixed_name, interleave({c: v for c, v in per_cat.items() if v}))
    return {c: len(v) for c, v in per_cat.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out_dir", type=Path)
    for cat, default in DEFAULT_COUNTS.items():
        p.add_argument(f"--{cat}", type=int, default=default, help=f"number of {cat} prompts (default {default})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mixed-name", default="mixed.jsonl", help="name of the interleaved file (a second prompt set "
                   "needs its own: distill ids carry the file name and line)")
    p.add_argument("--exclude", nargs="*", type=Path, default=[], metavar="FILE",
                   help="earlier prompt files (.jsonl or .jsonl.gz): prompts with the same first turn are left out")
    p.add_argument("--code-roots", nargs="+", type=Path, default=None, metavar="DIR",
                   help="source trees the doctest/docstring prompts are harvested from, instead of the installed "
                   "stdlib and site-packages (e.g. wheels downloaded with `pip download --no-deps` and unzipped "
                   "into one folder: the package folders sit directly under DIR, as in site-packages)")
    a = p.parse_args(argv)
    counts = {c: getattr(a, c) for c in BUILDERS}
    bad = [c for c, n in counts.items() if n < 0]
    if bad:
        p.error(f"counts must be >= 0: {', '.join(bad)}")
    if not any(counts.values()):
        p.error("every count is 0: nothing to write")
    if Path(a.mixed_name).name != a.mixed_name or not a.mixed_name.endswith(".jsonl") or a.mixed_name[:-6] in BUILDERS:
        p.error(f"--mixed-name {a.mixed_name!r}: expected a plain file name ending in .jsonl, not a category's")
    missing = [str(f) for f in a.exclude if not f.is_file()]
    if missing:
        p.error(f"--exclude: no such file: {', '.join(missing)}")
    if a.code_roots is not None:
        bad = [str(d) for d in a.code_roots if not d.is_dir()]
        if bad:
            p.error(f"--code-roots: not a directory: {', '.join(bad)}")
        if not any(counts[c] for c in HARVESTED):
            p.error("--code-roots is read by --doctest and --docstring only; both are 0")
    for cat, n in write(a.out_dir, counts, a.seed, a.mixed_name, first_turns(a.exclude), a.code_roots).items():
        print(f"{a.out_dir / (cat + '.jsonl')}: {n} prompts" + ("" if n == counts[cat] else f" (asked {counts[cat]}; fewer distinct exist, or excluded)"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
