"""Web-page noise of the kinds the Rho-1 paper shows in its Figures 11-12.

Each generator returns one block of text of a single noise kind (a label of
:data:`rho.data.provenance.LABEL_NAMES`): forum boilerplate, navigation and menus,
timestamps and URLs, gibberish (Game-of-Life RLE, hex and base64 dumps), off-topic text.
"""

from __future__ import annotations

import base64
import random
import string

from rho.data.miniature.problems import NAMES

_HANDLES = [
    "mathfan",
    "xX_solver_Xx",
    "quietowl",
    "prof_k",
    "numberNerd",
    "tutor42",
    "alg3bra",
    "pi_guy",
    "curious_cat",
    "stu_dent",
    "lurker",
    "calc_wiz",
    "ms_frac",
    "eqn_ninja",
    "the_real_gauss",
]
_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
_SITES = ["mathforum", "homeworkhelp", "askmath", "studyhub", "qna-math", "learnnumbers", "tutorboard"]
_MENU = [
    "Home",
    "Forums",
    "Math Help",
    "Algebra",
    "Arithmetic",
    "Geometry",
    "Calculus",
    "Members",
    "Register",
    "Log in",
    "Search",
    "FAQ",
    "Contact",
    "About",
    "Blog",
    "Resources",
    "Worksheets",
]
_OFF_TOPIC = [
    "Does anyone know a good place to get pizza near the campus? The one on Main Street closed.",
    "Off topic, but my cat just knocked my coffee all over the keyboard again.",
    "The weather has been terrible all week, I hope it clears up before the weekend trip.",
    "Buy cheap sunglasses online! Free shipping on all orders over 20 dollars. Limited offer!",
    "Check out my new music playlist, link in my profile. Mostly jazz and some old rock.",
    "We use cookies to improve your experience. By continuing to browse you agree to our policy.",
    "Subscribe to our newsletter for weekly tips, deals and the latest news from our partners.",
    "Hot singles in your area are waiting. Click here to meet them today.",
    "My brother says the new phone is not worth the price, the battery dies by lunch.",
    "Lol this thread reminds me of my high school teacher who always wore the same green tie.",
    "Advertisement: Learn to play guitar in 30 days or your money back, guaranteed.",
    "Has anyone watched the game last night? What a finish in the last two minutes.",
    "Sorry for the late reply, I was traveling and the hotel wifi was awful.",
    "Recipe of the day: mix flour, butter and sugar, then bake for twenty minutes.",
]


def _handle(rng: random.Random) -> str:
    h = rng.choice(_HANDLES + [n.lower() for n in NAMES])
    return h + (str(rng.randint(1, 999)) if rng.random() < 0.5 else "")


def _date(rng: random.Random) -> str:
    return f"{rng.choice(_MONTHS)} {rng.randint(1, 28)}, {rng.randint(2004, 2023)}"


def forum(rng: random.Random) -> str:
    """Forum boilerplate: user names, join dates, post counts, kudos, reply buttons."""
    u = _handle(rng)
    lines = rng.choice(
        [
            [f"{u}", "Junior Member", f"Joined: {_date(rng)}", f"Posts: {rng.randint(1, 5000)}"],
            [
                f"Posted by {u} » {_date(rng)}",
                f"Kudos: {rng.randint(0, 300)}  Thanks given: {rng.randint(0, 90)}",
            ],
            ["Reply With Quote", f"#{rng.randint(1, 40)}", f"{u} is offline"],
            [
                f"Re: {rng.choice(['help please', 'homework question', 'stuck on this', 'quick one'])}",
                f"{u} wrote:",
                f"Likes: {rng.randint(0, 50)} | Report | Quote",
            ],
            [f"Member since {_date(rng)} · {rng.randint(1, 900)} posts · Reputation {rng.randint(-5, 800)}"],
        ]
    )
    return "\n".join(lines)


def navigation(rng: random.Random) -> str:
    """Menus, breadcrumbs, share buttons and pagination."""
    kind = rng.randrange(4)
    if kind == 0:
        return " | ".join(rng.sample(_MENU, rng.randint(5, 9)))
    if kind == 1:
        return "You are here: " + " > ".join(rng.sample(_MENU, 3)) + f" > Thread {rng.randint(100, 99999)}"
    if kind == 2:
        return "Share this: Twitter Facebook Reddit Email Print\nSkip to main content"
    pages = rng.randint(2, 12)
    return f"Page 1 of {pages}  « First  < Prev  1 2 3 ... {pages}  Next >  Last »"


def timestamp_url(rng: random.Random) -> str:
    """Timestamps, edit notes and URLs."""
    site = rng.choice(_SITES)
    url = f"https://www.{site}.com/{rng.choice(['t', 'thread', 'q', 'post'])}/{rng.randint(1000, 999999)}"
    if rng.random() < 0.5:
        url += f"?page={rng.randint(1, 9)}&sort={rng.choice(['new', 'top', 'old'])}"
    ts = (
        f"{rng.randint(2004, 2023)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} "
        f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}"
    )
    return rng.choice(
        [
            f"{ts}\n{url}",
            f"Last edited by {_handle(rng)}; {_date(rng)} at {rng.randint(1, 12)}:{rng.randint(0, 59):02d} PM.",
            f"Source: {url}",
            f"Retrieved {ts} from {url}",
            f"Permalink: {url}#post{rng.randint(1, 99999)}",
        ]
    )


def gibberish(rng: random.Random) -> str:
    """Game-of-Life RLE patterns, hex and base64 dumps, random character runs."""
    kind = rng.randrange(4)
    if kind == 0:
        w, h = rng.randint(3, 30), rng.randint(3, 20)
        rows = []
        for _ in range(h):
            row, n = "", 0
            while n < w:
                k = rng.randint(1, 4)
                row += (str(k) if k > 1 else "") + rng.choice("bo")
                n += k
            rows.append(row)
        return (
            f"#N {rng.choice(['glider', 'pulsar', 'gun', 'puffer'])}{rng.randint(1, 99)}\nx = {w}, y = {h}, rule = B3/S23\n"
            + "$".join(rows)
            + "!"
        )
    if kind == 1:
        return "\n".join(
            " ".join(f"{rng.randrange(65536):04x}" for _ in range(8)) for _ in range(rng.randint(2, 6))
        )
    if kind == 2:
        raw = bytes(rng.randrange(256) for _ in range(rng.randint(30, 120)))
        return base64.b64encode(raw).decode()
    alphabet = string.ascii_letters + string.digits + "{}[]<>=;:/\\%$#@&*"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(20, 100)))


def off_topic(rng: random.Random) -> str:
    """Off-topic chatter and advertisements."""
    return " ".join(rng.sample(_OFF_TOPIC, rng.randint(1, 3)))


NOISE_KINDS = {
    "forum": forum,
    "navigation": navigation,
    "timestamp_url": timestamp_url,
    "gibberish": gibberish,
    "off_topic": off_topic,
}
