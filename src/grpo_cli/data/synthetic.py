"""GSM8K-style arithmetic word problems made up on the spot, for smoke runs with no network.

The rows look like GSM8K's: a `question`, and an `answer` that works the problem one step a line
with calculator annotations (`16 - 3 - 4 = <<16-3-4=9>>9`) and ends in `#### 9`. Every number
along the way is a whole number and every final answer a positive integer below 1,000,000.

Difficulty levels: `gsm8k_like` (the default: 12 multi-step templates, too hard for a tiny model),
`easy` (one operation on small numbers), `two_step` (two operations) and `simple` (either). The
levels below `gsm8k_like` split their problem space in three by a hash of the arithmetic alone,
so the `sft` split, the `train` split (GRPO's) and every other split (held out: `test`, ...)
never share a problem, whatever the seed, the names or the story around the numbers.

Small numbers there are operands of one digit (or up to 18 to take from) and results below
100. A tokenizer spells numbers digit by digit, and a 1.1M-parameter model learns sums this
size in a few minutes of warm-up, where with operands up to 50 it learned none and answered `10`
to most problems. Each single step (`7 + 8`) recurs across the parts; what is held out is the
problem, its chain of steps, never trained on in any words.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from collections.abc import Callable

Person = tuple[str, str, str, str]  # name, he/she, him/her, his/her
WordProblem = tuple[str, list[str], int]  # question, worked steps, final answer

PEOPLE: tuple[Person, ...] = tuple(
    (name, "she", "her", "her")
    for name in (
        "Janet",
        "Natalia",
        "Betty",
        "Julie",
        "Tina",
        "Weng",
        "Carla",
        "Marie",
        "Alexis",
        "Rose",
        "Priya",
        "Mei",
        "Sofia",
        "Amara",
        "Hannah",
        "Lucia",
        "Ines",
        "Fatima",
        "Grace",
        "Olivia",
    )
) + tuple(
    (name, "he", "him", "his")
    for name in (
        "James",
        "Albert",
        "Mark",
        "John",
        "Tobias",
        "Kenji",
        "Carlos",
        "Omar",
        "Liam",
        "Ravi",
        "Ben",
        "Mateo",
        "Dmitri",
        "Kwame",
        "Felix",
        "Noah",
        "Hiro",
        "Samuel",
        "Luca",
        "Ahmed",
    )
)

# singular, plural, lowest and highest whole-dollar price
GOODS = (
    ("notebook", "notebooks", 2, 6),
    ("pen", "pens", 1, 3),
    ("apple", "apples", 1, 2),
    ("sandwich", "sandwiches", 4, 9),
    ("comic book", "comic books", 3, 8),
    ("bag of chips", "bags of chips", 1, 4),
    ("juice box", "juice boxes", 1, 3),
    ("candle", "candles", 3, 10),
    ("toy car", "toy cars", 2, 7),
    ("muffin", "muffins", 2, 4),
    ("packet of seeds", "packets of seeds", 1, 5),
    ("pair of socks", "pairs of socks", 3, 8),
)

# what is bought on sale: singular, plural
SALE_GOODS = (
    ("jacket", "jackets"),
    ("pair of shoes", "pairs of shoes"),
    ("lamp", "lamps"),
    ("backpack", "backpacks"),
    ("board game", "board games"),
    ("chair", "chairs"),
    ("headphone set", "headphone sets"),
    ("rug", "rugs"),
)

# things to save for
WISHES = ("bike", "video game console", "guitar", "tablet", "telescope", "skateboard", "camera")

# verb, base verb, unit counted, unit of time, lowest and highest rate, lowest and highest time
ACTIVITIES = (
    ("drives", "drive", "miles", "hour", 30, 70, 2, 6),
    ("types", "type", "words", "minute", 30, 80, 10, 60),
    ("knits", "knit", "rows", "hour", 5, 20, 2, 4),
    ("reads", "read", "pages", "hour", 10, 40, 2, 4),
    ("paints", "paint", "fence boards", "hour", 8, 25, 2, 5),
    ("folds", "fold", "paper cranes", "hour", 6, 15, 2, 5),
)

# container, things in it
BATCHES = (
    ("trays", "cookies"),
    ("boxes", "cupcakes"),
    ("bags", "marbles"),
    ("packs", "stickers"),
    ("jars", "candies"),
    ("crates", "oranges"),
)

BAKED_GOODS = ("cookies", "brownies", "cupcakes", "muffins", "pies", "loaves of bread")
ANIMALS = ("cows", "sheep", "goats", "chickens", "pigs", "ducks", "rabbits")
LAYERS = ("ducks", "hens", "chickens", "quails")
FRACTIONS = {2: "half", 3: "a third", 4: "a quarter", 5: "a fifth"}
TIMES = {2: "twice", 3: "three times", 4: "four times"}
WEEKLY_GIFTS = ("grandmother", "grandfather", "aunt", "uncle", "mom", "dad")


DIFFICULTIES = ("gsm8k_like", "easy", "two_step", "simple")
DEFAULT_DIFFICULTY = "gsm8k_like"
# Share of the problem space, in tenths, each part of a split level gets; a larger warm-up part
# since supervised fine-tuning needs the most rows.
PARTS = {"sft": range(0, 5), "train": range(5, 8), "heldout": range(8, 10)}


def synthetic_rows(
    n: int, seed: int = 0, split: str = "train", difficulty: str = DEFAULT_DIFFICULTY
) -> list[dict[str, str]]:
    """n GSM8K-style rows {"question": ..., "answer": "...worked solution...\\n#### N"}."""
    if n < 0:
        raise ValueError(f"n must be 0 or more, got {n}")
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"difficulty must be one of {', '.join(DIFFICULTIES)}, got {difficulty!r}")
    templates = level_templates(difficulty)
    part = None if difficulty == DEFAULT_DIFFICULTY else split_part(split)
    # GRPO's part draws a problem, not a template (each template as often as it has problems),
    # as the held-out rows come: those are nearly every problem of their part, since they are
    # distinct. The warm-up's part draws each template as often as any other, so that it learns
    # every kind of problem, however few problems a kind has.
    weights = [PROBLEMS.get(t.__name__, 1) for t in templates] if part == "train" else None
    # A str seed goes through SHA-512, not the per-process salted hash(), so the rows are the
    # same in every process; putting the split in it gives each split its own stream. The
    # default level keeps the stream it always had, so existing runs stay reproducible.
    level = "" if difficulty == DEFAULT_DIFFICULTY else f"{difficulty} "
    rng = random.Random(f"grpo-cli synthetic {level}{split} {seed}")
    rows: list[dict[str, str]] = []
    seen: set[str] = set()
    # Held-out rows are graded one by one, so N of them should be N problems: the held-out
    # part is the smallest (363 problems on the simple level), and once most of a template's
    # problems are drawn, most draws are repeats. 1,000 redraws give 340 rows of 340 problems
    # (64 gave 250 of 300) in 0.2 s. The training parts are many times their problem count
    # (every sum seen again in other words), where more redraws only cost time.
    redraws = 1000 if part == "heldout" else 7
    while len(rows) < n:
        # Redraw on a repeated problem, a bounded number of times so a tiny space cannot hang us. On
        # a split level a problem is its arithmetic: the same sum in other words is no new row.
        repeats = 0
        while True:
            if weights is None:
                question, steps, answer = rng.choice(templates)(rng)
            else:
                question, steps, answer = rng.choices(templates, weights)[0](rng)
            if part is None:
                problem = question
            else:
                problem = arithmetic(steps)
                if problem_part(problem) != part:
                    continue
            if problem not in seen:
                break
            if repeats >= redraws:
                # The part is used up: what is left are its problems in other words, and
                # redrawing for each of them would only cost time.
                redraws = 0
                break
            repeats += 1
        seen.add(problem)
        rows.append({"question": question, "answer": "\n".join([*steps, f"#### {answer}"])})
    return rows


def split_part(split: str) -> str:
    """The part of a split level's problem space that SPLIT draws from: `sft` the warm-up's,
    `train` GRPO's, any other split (test, validation, ...) the held-out part."""
    return split if split in ("sft", "train") else "heldout"


_EXPRESSION = re.compile(r"<<([^=<>]+)=")


def arithmetic(steps: list[str]) -> str:
    """A problem's sums, whatever the story around them: `3+5|8-2`. The operands of a sum or
    a product are put in order, so that `5 + 3` held out is not `3 + 5` trained on."""
    return "|".join(_in_order(e) for e in _EXPRESSION.findall("\n".join(steps)))


_COMMUTATIVE = re.compile(r"(\d+)([+*])(\d+)")


def _in_order(expression: str) -> str:
    found = _COMMUTATIVE.fullmatch(expression.replace(" ", ""))
    if found is None:
        return expression
    a, op, b = found.groups()
    return f"{min(int(a), int(b))}{op}{max(int(a), int(b))}"


def problem_part(arithmetic: str) -> str:
    """The part a problem belongs to, by its arithmetic alone: two stories around the same sums
    are one problem, so a held-out problem is not trained on in other words."""
    bucket = int(hashlib.sha256(arithmetic.encode()).hexdigest(), 16) % 10
    return next(name for name, tenths in PARTS.items() if bucket in tenths)


def level_templates(difficulty: str) -> tuple[Callable[[random.Random], WordProblem], ...]:
    # Looked up on each call, so a test can swap a level's templates.
    return {
        "gsm8k_like": TEMPLATES,
        "easy": EASY_TEMPLATES,
        "two_step": TWO_STEP_TEMPLATES,
        "simple": EASY_TEMPLATES + TWO_STEP_TEMPLATES,
    }[difficulty]


def eggs_sold(rng: random.Random) -> WordProblem:
    """Janet's ducks: eggs laid, some eaten and baked, the rest sold."""
    name, he, _, his = rng.choice(PEOPLE)
    laid, eaten, baked, price = (
        rng.randint(16, 60),
        rng.randint(1, 5),
        rng.randint(2, 8),
        rng.randint(2, 5),
    )
    weekly = rng.random() < 0.5
    left = laid - eaten - baked
    daily = left * price
    question = (
        f"{name}'s {rng.choice(LAYERS)} lay {laid} eggs per day. {he.title()} eats {eaten} for "
        f"breakfast every morning and bakes muffins for {his} friends every day with {baked}. "
        f"{he.title()} sells the remainder at the farmers' market daily for ${price} per egg. "
        f"How much in dollars does {he} make every {'week' if weekly else 'day'} at the "
        "farmers' market?"
    )
    steps = [
        f"{he.title()} sells {_calc(f'{laid} - {eaten} - {baked}', left)} eggs a day.",
        f"{he.title()} makes {_calc(f'{left} * {price}', daily, '$')} every day.",
    ]
    if not weekly:
        return question, steps, daily
    weekly_total = daily * 7
    steps.append(f"In a week {he} makes {_calc(f'{daily} * 7', weekly_total, '$')}.")
    return question, steps, weekly_total


def shopping_change(rng: random.Random) -> WordProblem:
    """Two kinds of goods paid with one bill; the change."""
    name, he, _, _ = rng.choice(PEOPLE)
    (one, ones, lo1, hi1), (two, twos, lo2, hi2) = rng.sample(GOODS, 2)
    count1, price1 = rng.randint(2, 6), rng.randint(lo1, hi1)
    count2, price2 = rng.randint(2, 6), rng.randint(lo2, hi2)
    cost1, cost2 = count1 * price1, count2 * price2
    total = cost1 + cost2
    bill = next((bill for bill in (20, 50, 100) if bill > total), 100 * (total // 100 + 1))
    question = (
        f"{name} buys {count1} {ones} for ${price1} each and {count2} {twos} for ${price2} "
        f"each. {he.title()} pays with a ${bill} bill. How much change does {he} get?"
    )
    steps = [
        f"The {ones} cost {_calc(f'{count1} * {price1}', cost1, '$')}.",
        f"The {twos} cost {_calc(f'{count2} * {price2}', cost2, '$')}.",
        f"Altogether {he} spends {_calc(f'{cost1} + {cost2}', total, '$')}.",
        f"{he.title()} gets {_calc(f'{bill} - {total}', bill - total, '$')} in change.",
    ]
    return question, steps, bill - total


def rate_times_time(rng: random.Random) -> WordProblem:
    """A steady rate kept up for some time a day, some days a week, some weeks."""
    name, he, _, _ = rng.choice(PEOPLE)
    verb, base, unit, per, lo_rate, hi_rate, lo_time, hi_time = rng.choice(ACTIVITIES)
    rate, time = rng.randint(lo_rate, hi_rate), rng.randint(lo_time, hi_time)
    days, weeks = rng.randint(2, 7), rng.randint(2, 4)
    daily = rate * time
    weekly = daily * days
    total = weekly * weeks
    question = (
        f"{name} {verb} {rate} {unit} per {per}. {he.title()} {verb} for {time} {per}s a day, "
        f"{days} days a week. How many {unit} does {he} {base} in {weeks} weeks?"
    )
    steps = [
        f"Each day {he} {verb} {_calc(f'{rate} * {time}', daily)} {unit}.",
        f"Each week {he} {verb} {_calc(f'{daily} * {days}', weekly)} {unit}.",
        f"In {weeks} weeks {he} {verb} {_calc(f'{weekly} * {weeks}', total)} {unit}.",
    ]
    return question, steps, total


def sharing_equally(rng: random.Random) -> WordProblem:
    """Batches of things, a few kept, the rest shared equally among friends."""
    name, he, _, _ = rng.choice(PEOPLE)
    container, things = rng.choice(BATCHES)
    batches, per_batch, friends = rng.randint(2, 6), rng.randint(6, 24), rng.randint(2, 8)
    total = batches * per_batch
    # Keep what is left over after an even share, plus a round or two more, but always keep
    # something and leave each friend at least one.
    rounds = rng.randint(0 if total % friends else 1, min(2, total // friends - 1))
    kept = total % friends + friends * rounds
    rest = total - kept
    each = rest // friends
    question = (
        f"{name} has {batches} {container} with {per_batch} {things} in each. {he.title()} keeps "
        f"{kept} {things} and shares the rest equally among {friends} friends. How many "
        f"{things} does each friend get?"
    )
    steps = [
        f"{he.title()} has {_calc(f'{batches} * {per_batch}', total)} {things}.",
        f"{he.title()} shares {_calc(f'{total} - {kept}', rest)} {things}.",
        f"Each friend gets {_calc(f'{rest} / {friends}', each)} {things}.",
    ]
    return question, steps, each


def discount(rng: random.Random) -> WordProblem:
    """A percentage off a price, then several bought at the sale price."""
    name, he, _, _ = rng.choice(PEOPLE)
    one, ones = rng.choice(SALE_GOODS)
    percent = rng.choice((10, 20, 25, 30, 40, 50, 60, 75))
    # The price is a multiple of this, so the discount comes out in whole dollars.
    step = 100 // math.gcd(percent, 100)
    price = step * rng.randint(max(1, 10 // step), 200 // step)
    count = rng.randint(2, 6)
    off = price * percent // 100
    sale = price - off
    total = sale * count
    question = (
        f"A {one} normally costs ${price}. The store has a {percent}% off sale. {name} buys "
        f"{count} {ones}. How much does {he} pay?"
    )
    steps = [
        f"The discount is {_calc(f'{price} * {percent} / 100', off, '$')}.",
        f"Each {one} costs {_calc(f'{price} - {off}', sale, '$')}.",
        f"{he.title()} pays {_calc(f'{sale} * {count}', total, '$')}.",
    ]
    return question, steps, total


def future_age(rng: random.Random) -> WordProblem:
    """Ages as multiples and halves of each other, then some years later."""
    (a, *_), (b, *_), (c, *_) = rng.sample(PEOPLE, 3)
    age, times, years = rng.randint(3, 20), rng.randint(2, 4), rng.randint(2, 15)
    if age * times % 2:
        age += 1
    b_age = age * times
    c_age = b_age // 2
    later = c_age + years
    question = (
        f"{a} is {age} years old. {b} is {TIMES[times]} as old as {a}, and {c} is half as old "
        f"as {b}. How old will {c} be in {years} years?"
    )
    steps = [
        f"{b} is {_calc(f'{age} * {times}', b_age)} years old.",
        f"{c} is {_calc(f'{b_age} / 2', c_age)} years old.",
        f"In {years} years {c} will be {_calc(f'{c_age} + {years}', later)} years old.",
    ]
    return question, steps, later


def total_of_ages(rng: random.Random) -> WordProblem:
    """Three ages, each from the one before; their sum."""
    (a, *_), (b, *_), (c, *_) = rng.sample(PEOPLE, 3)
    age, older, times = rng.randint(4, 30), rng.randint(2, 12), rng.randint(2, 3)
    b_age = age + older
    c_age = b_age * times
    total = age + b_age + c_age
    question = (
        f"{a} is {age} years old. {b} is {older} years older than {a}, and {c} is "
        f"{TIMES[times]} as old as {b}. What is the total of their ages?"
    )
    steps = [
        f"{b} is {_calc(f'{age} + {older}', b_age)} years old.",
        f"{c} is {_calc(f'{b_age} * {times}', c_age)} years old.",
        f"Together they are {_calc(f'{age} + {b_age} + {c_age}', total)} years old.",
    ]
    return question, steps, total


def shopping_total(rng: random.Random) -> WordProblem:
    """Three kinds of goods; what they cost together."""
    name, he, _, _ = rng.choice(PEOPLE)
    goods = rng.sample(GOODS, 3)
    counts = [rng.randint(2, 9) for _ in goods]
    prices = [rng.randint(lo, hi) for _, _, lo, hi in goods]
    costs = [count * price for count, price in zip(counts, prices, strict=True)]
    total = sum(costs)
    bought = [
        f"{count} {ones} for ${price} each"
        for (_, ones, _, _), count, price in zip(goods, counts, prices, strict=True)
    ]
    question = (
        f"{name} buys {bought[0]}, {bought[1]} and {bought[2]}. How much does {he} spend in all?"
    )
    steps = [
        f"The {ones} cost {_calc(f'{count} * {price}', cost, '$')}."
        for (_, ones, _, _), count, price, cost in zip(goods, counts, prices, costs, strict=True)
    ]
    steps.append(f"In all {he} spends {_calc(' + '.join(map(str, costs)), total, '$')}.")
    return question, steps, total


def saving_per_week(rng: random.Random) -> WordProblem:
    """Savings plus a gift, the rest saved week by week; how many weeks."""
    name, he, him, his = rng.choice(PEOPLE)
    saved, gift = 5 * rng.randint(2, 20), 5 * rng.randint(1, 10)
    weekly, weeks = rng.randint(5, 30), rng.randint(2, 20)
    has = saved + gift
    needed = weekly * weeks
    price = has + needed
    question = (
        f"{name} wants to buy a {rng.choice(WISHES)} that costs ${price}. {he.title()} has "
        f"already saved ${saved}, and {his} {rng.choice(WEEKLY_GIFTS)} gives {him} ${gift}. If "
        f"{he} saves ${weekly} a week, how many weeks will it take {him} to have enough?"
    )
    steps = [
        f"{he.title()} has {_calc(f'{saved} + {gift}', has, '$')}.",
        f"{he.title()} still needs {_calc(f'{price} - {has}', needed, '$')}.",
        f"It will take {_calc(f'{needed} / {weekly}', weeks)} weeks.",
    ]
    return question, steps, weeks


def farm_animals(rng: random.Random) -> WordProblem:
    """A fraction of a herd sold, then more bought."""
    name, he, _, his = rng.choice(PEOPLE)
    animals = rng.choice(ANIMALS)
    part = rng.choice(tuple(FRACTIONS))
    herd = part * rng.randint(4, 40)
    bought = rng.randint(3, 30)
    sold = herd // part
    left = herd - sold
    now = left + bought
    question = (
        f"{name} has {herd} {animals} on {his} farm. {he.title()} sells "
        f"{FRACTIONS[part]} of them and then buys {bought} more. How many {animals} does {he} "
        "have now?"
    )
    steps = [
        f"{he.title()} sells {_calc(f'{herd} / {part}', sold)} {animals}.",
        f"{he.title()} has {_calc(f'{herd} - {sold}', left)} {animals} left.",
        f"After buying more {he} has {_calc(f'{left} + {bought}', now)} {animals}.",
    ]
    return question, steps, now


def bake_sale_profit(rng: random.Random) -> WordProblem:
    """Batches baked and sold at a price, less the cost of ingredients."""
    name, he, _, _ = rng.choice(PEOPLE)
    goods = rng.choice(BAKED_GOODS)
    batches, per_batch, price = rng.randint(2, 8), rng.randint(6, 24), rng.randint(1, 5)
    baked = batches * per_batch
    earned = baked * price
    cost = rng.randint(max(1, earned // 4), earned * 3 // 4)
    profit = earned - cost
    question = (
        f"{name} bakes {batches} batches of {goods} with {per_batch} in each batch and sells "
        f"them for ${price} each. The ingredients cost ${cost}. How much profit does {he} make "
        "if all of them sell?"
    )
    steps = [
        f"{he.title()} bakes {_calc(f'{batches} * {per_batch}', baked)} {goods}.",
        f"{he.title()} earns {_calc(f'{baked} * {price}', earned, '$')}.",
        f"{he.title()} makes a profit of {_calc(f'{earned} - {cost}', profit, '$')}.",
    ]
    return question, steps, profit


def pages_left(rng: random.Random) -> WordProblem:
    """Pages read yesterday and twice as many today; half of the rest tomorrow."""
    name, he, _, _ = rng.choice(PEOPLE)
    yesterday, half_left = rng.randint(5, 40), rng.randint(10, 100)
    today = yesterday * 2
    pages = yesterday + today + 2 * half_left
    left = pages - yesterday - today
    question = (
        f"{name} is reading a {pages}-page book. Yesterday {he} read {yesterday} pages, and "
        f"today {he} read twice as many pages as yesterday. If {he} wants to read half of the "
        f"remaining pages tomorrow, how many pages should {he} read?"
    )
    steps = [
        f"Today {he} read {_calc(f'{yesterday} * 2', today)} pages.",
        f"There are {_calc(f'{pages} - {yesterday} - {today}', left)} pages left.",
        f"Tomorrow {he} should read {_calc(f'{left} / 2', half_left)} pages.",
    ]
    return question, steps, half_left


def _calc(expr: str, value: int, unit: str = "") -> str:
    """`3 * 4 = $<<3*4=12>>12`: a written step with GSM8K's calculator annotation."""
    return f"{expr} = {unit}<<{expr.replace(' ', '')}={value}>>{value}"


TEMPLATES: tuple[Callable[[random.Random], WordProblem], ...] = (
    eggs_sold,
    shopping_change,
    rate_times_time,
    sharing_equally,
    discount,
    future_age,
    total_of_ages,
    shopping_total,
    saving_per_week,
    farm_animals,
    bake_sale_profit,
    pages_left,
)


# Small counted things for the simple levels: singular, plural.
SMALL_THINGS = (
    ("apple", "apples"),
    ("marble", "marbles"),
    ("sticker", "stickers"),
    ("cookie", "cookies"),
    ("pen", "pens"),
    ("orange", "oranges"),
    ("candy", "candies"),
    ("notebook", "notebooks"),
)
CONTAINERS = ("bags", "boxes", "jars", "packs", "trays", "crates")


def add_more(rng: random.Random) -> WordProblem:
    """Some things, then more of them."""
    name, he, _, _ = rng.choice(PEOPLE)
    _, things = rng.choice(SMALL_THINGS)
    a, b = rng.randint(1, 9), rng.randint(1, 9)
    question = (
        f"{name} has {a} {things}. {he.title()} gets {b} more. How many {things} does {he} "
        "have now?"
    )
    return question, [f"{he.title()} has {_calc(f'{a} + {b}', a + b)} {things}."], a + b


def take_away(rng: random.Random) -> WordProblem:
    """Some things, a few of them given away."""
    name, he, _, _ = rng.choice(PEOPLE)
    _, things = rng.choice(SMALL_THINGS)
    a = rng.randint(3, 18)
    b = rng.randint(1, min(9, a - 1))
    question = (
        f"{name} has {a} {things}. {he.title()} gives {b} to a friend. How many {things} does "
        f"{he} have left?"
    )
    return question, [f"{he.title()} has {_calc(f'{a} - {b}', a - b)} {things} left."], a - b


def groups_of(rng: random.Random) -> WordProblem:
    """Containers with the same number of things in each."""
    name, he, _, _ = rng.choice(PEOPLE)
    _, things = rng.choice(SMALL_THINGS)
    a, b = rng.randint(2, 9), rng.randint(2, 9)
    question = (
        f"{name} buys {a} {rng.choice(CONTAINERS)} with {b} {things} in each. How many {things} "
        f"does {he} buy?"
    )
    return question, [f"{he.title()} buys {_calc(f'{a} * {b}', a * b)} {things}."], a * b


def more_then_fewer(rng: random.Random) -> WordProblem:
    """Some things, more of them, then some given away."""
    name, he, _, _ = rng.choice(PEOPLE)
    _, things = rng.choice(SMALL_THINGS)
    a, b = rng.randint(1, 9), rng.randint(1, 9)
    c = rng.randint(1, min(9, a + b - 1))
    question = (
        f"{name} has {a} {things}. {he.title()} gets {b} more and then gives {c} to a friend. "
        f"How many {things} does {he} have now?"
    )
    steps = [
        f"After getting more {he} has {_calc(f'{a} + {b}', a + b)} {things}.",
        f"After giving some away {he} has {_calc(f'{a + b} - {c}', a + b - c)} {things}.",
    ]
    return question, steps, a + b - c


def fewer_then_more(rng: random.Random) -> WordProblem:
    """Some things, some eaten, then more bought."""
    name, he, _, _ = rng.choice(PEOPLE)
    _, things = rng.choice(SMALL_THINGS)
    a = rng.randint(3, 18)
    b, c = rng.randint(1, min(9, a - 1)), rng.randint(1, 9)
    question = (
        f"{name} has {a} {things}. {he.title()} gives away {b} and then buys {c} more. How "
        f"many {things} does {he} have now?"
    )
    steps = [
        f"After giving some away {he} has {_calc(f'{a} - {b}', a - b)} {things}.",
        f"After buying more {he} has {_calc(f'{a - b} + {c}', a - b + c)} {things}.",
    ]
    return question, steps, a - b + c


def groups_plus_extra(rng: random.Random) -> WordProblem:
    """Containers of things, plus some already had."""
    name, he, _, _ = rng.choice(PEOPLE)
    _, things = rng.choice(SMALL_THINGS)
    a, b, c = rng.randint(2, 5), rng.randint(2, 5), rng.randint(1, 9)
    question = (
        f"{name} has {c} {things}. {he.title()} buys {a} {rng.choice(CONTAINERS)} with {b} "
        f"{things} in each. How many {things} does {he} have now?"
    )
    steps = [
        f"{he.title()} buys {_calc(f'{a} * {b}', a * b)} {things}.",
        f"Now {he} has {_calc(f'{a * b} + {c}', a * b + c)} {things}.",
    ]
    return question, steps, a * b + c


def groups_minus_eaten(rng: random.Random) -> WordProblem:
    """Trays of things baked, a few eaten."""
    name, he, _, _ = rng.choice(PEOPLE)
    _, things = rng.choice(SMALL_THINGS)
    a, b = rng.randint(2, 5), rng.randint(2, 5)
    c = rng.randint(1, min(9, a * b - 1))
    question = (
        f"{name} has {a} {rng.choice(CONTAINERS)} with {b} {things} in each. {he.title()} "
        f"gives {c} {things} to a friend. How many {things} does {he} have left?"
    )
    steps = [
        f"{he.title()} has {_calc(f'{a} * {b}', a * b)} {things}.",
        f"{he.title()} has {_calc(f'{a * b} - {c}', a * b - c)} {things} left.",
    ]
    return question, steps, a * b - c


def sum_then_groups(rng: random.Random) -> WordProblem:
    """Two piles of containers, the same number of things in each."""
    name, he, _, _ = rng.choice(PEOPLE)
    _, things = rng.choice(SMALL_THINGS)
    a, b, c = rng.randint(1, 4), rng.randint(1, 4), rng.randint(2, 5)
    container = rng.choice(CONTAINERS)
    question = (
        f"{name} buys {a} red {container} and {b} blue {container}, with {c} {things} in each. "
        f"How many {things} does {he} buy?"
    )
    steps = [
        f"{he.title()} buys {_calc(f'{a} + {b}', a + b)} {container}.",
        f"{he.title()} buys {_calc(f'{a + b} * {c}', (a + b) * c)} {things}.",
    ]
    return question, steps, (a + b) * c


# How many problems (distinct arithmetic, `arithmetic`) each simple template makes; a test counts
# them. Drawn one template as often as another, GRPO saw `a - b + c` in 1 prompt of 8, though it
# is 1,044 of the 1,783 problems and over half of the held-out rows.
PROBLEMS = {
    "add_more": 45,
    "take_away": 116,
    "groups_of": 36,
    "more_then_fewer": 335,
    "fewer_then_more": 1044,
    "groups_plus_extra": 90,
    "groups_minus_eaten": 77,
    "sum_then_groups": 40,
}

EASY_TEMPLATES: tuple[Callable[[random.Random], WordProblem], ...] = (
    add_more,
    take_away,
    groups_of,
)
TWO_STEP_TEMPLATES: tuple[Callable[[random.Random], WordProblem], ...] = (
    more_then_fewer,
    fewer_then_more,
    groups_plus_extra,
    groups_minus_eaten,
    sum_then_groups,
)
