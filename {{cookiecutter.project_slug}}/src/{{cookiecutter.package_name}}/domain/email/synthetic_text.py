"""Words and templates of the synthetic corpus: what each kind of email says.

Kept apart from ``synthetic.py`` (which decides who sends what, when) so that the vocabulary can
grow without touching the world model. Every choice is driven by the caller's random integers
(``r``, one list per email), so the text is a pure function of them: same integers, same email.

Ham and spam deliberately share vocabulary: newsletters shout offers, notifications ask to verify
an account, colleagues attach invoices; phishing copies notifications word for word and a
compromised account writes like its owner. The text alone therefore cannot separate everything.
"""

from __future__ import annotations


def words(text: str) -> list[str]:
    """The whitespace-separated words of ``text`` (keeps long vocabularies compact)."""
    return text.split()


def split_lines(text: str) -> list[str]:
    """The ``|``-separated lines of a template."""
    return text.split("|")


FIRST = words(
    "Anna Ben Carla David Emma Felix Grace Hugo Irene Jonas Karen Liam Maria Noah Olga Paul "
    "Rita Sam Tina Victor Wendy Yusuf Zoe Omar Lena Marco Priya Chen Sofia Lucas Nina Tom Eva "
    "Raj Julia Kai Mia Leo Sara Ivan"
)
LAST = words(
    "Smith Jones Miller Garcia Brown Davis Wilson Moore Taylor Clark Lewis Walker Hall Young "
    "King Wright Lopez Hill Scott Green Adams Baker Nelson Carter Mitchell Perez Roberts Turner "
    "Phillips Campbell Parker Evans Edwards Collins Stewart Morris Murphy Cook Rogers Novak"
)
SYL_A = words(
    "north blue peak river stone bright cedar maple silver urban green swift harbor summit lumen "
    "nova terra pixel atlas orbit amber copper delta ember falcon granite hazel iris juniper"
)
SYL_B = words(
    "works labs mart bank air hub ly fy shop media health travel foods wear books games "
    "point line wise craft nest field gate way base"
)
DAYS = words("Monday Tuesday Wednesday Thursday Friday Saturday Sunday")
MONTHS = words("January February March April May June July August September October November")
CITIES = words("Berlin Lisbon Austin Toronto Lyon Porto Denver Oslo Leeds Prague Dublin Madrid")
PRODUCTS = split_lines(
    "running shoes|winter jackets|headphones|coffee makers|backpacks|sunglasses|desk lamps|"
    "smart watches|kitchen knives|yoga mats|travel bags|bed linen|garden tools|board games"
)
EVENTS = split_lines("the wedding|the trip|the party|the concert|the hike|the game|the reunion")
DOCS = split_lines(
    "quarterly report|budget sheet|project plan|slide deck|contract draft|meeting notes|"
    "proposal|roadmap|invoice|timesheet|design review|sales forecast"
)
SERVICES = split_lines("account|profile|subscription|membership|online banking|cloud storage")

# Words spam campaigns obfuscate (l33t, spacing, dots, HTML splitting).
TRIGGERS = words(
    "viagra cialis pharmacy pills casino bonus jackpot loan credit bitcoin investment profit "
    "winner prize cash free guaranteed discount replica rolex weight dating singles"
)
LEET = str.maketrans({"a": "4", "e": "3", "i": "1", "o": "0", "s": "$", "t": "7"})

PERSON_SUBJECTS = split_lines(
    "Re: dinner on {day}|photos from {event}|quick question|Re: {event}|are you free {day}?|"
    "Fwd: this made me think of you|{first}'s birthday|Re: plans for {day}|hello from {city}|"
    "Re: Re: the recipe|catching up|Fwd: tickets for {day}|the address|Re: weekend"
)
PERSON_LINES = split_lines(
    "Are you free on {day}? We could grab dinner.|Thanks for the photos from {event}!|"
    "Let me know what you think.|I'll call you later tonight.|Mom says hi.|"
    "Did you see the game last night?|Can you send me the address again?|"
    "I found the recipe you asked about.|We land in {city} around noon on {day}.|"
    "Here is the thing I mentioned, have a look.|Sorry for the late reply, busy week.|"
    "The kids loved it, thank you so much.|Shall I bring anything on {day}?|"
    "I got a free ticket for the concert if you want to come.|Miss you, see you soon.|"
    "The offer on the flat fell through, long story.|Happy birthday to {first}!|"
    "Can you believe it is already {month}?|Let's catch up properly next week.|"
    "I left my charger at your place, no rush.|Check this out when you have a minute."
)
WORK_SUBJECTS = split_lines(
    "Re: {doc} for Q{q}|{doc} - updated|meeting on {day}|Re: next steps|invoice {inv}|"
    "Fwd: client feedback|agenda for {day}|Re: {doc}|action items from today|"
    "Re: Re: timeline|review needed: {doc}|out of office {day}|budget approval"
)
WORK_LINES = split_lines(
    "Please find attached the {doc} for Q{q}.|Can we move the meeting to {day} at {hour}:00?|"
    "I have updated the {doc} with your comments.|Let me know if you have any questions.|"
    "The client approved the proposal this morning.|Invoice {inv} is attached for your records.|"
    "Could you review the {doc} before {day}?|I'll be out of office on {day}.|"
    "Thanks everyone for the productive meeting.|Please process the payment by {day}.|"
    "Here is the link to the shared folder.|We need the final numbers by end of week.|"
    "I'm free after {hour}:00 if you want to discuss.|Adding {first} for visibility.|"
    "Great work on the launch, team.|The vendor sent a revised offer, see below."
)
NEWS_SUBJECTS = split_lines(
    "{brand} Weekly: new {product}|Last chance: {pct}% off {product}|Your exclusive offer inside|"
    "Free shipping this weekend|{brand} picks for you|Members save {pct}% today|"
    "New arrivals: {product}|Don't miss our {month} sale|{brand} newsletter - {month} edition|"
    "A gift for you: {pct}% off|Flash sale ends tonight"
)
NEWS_LINES = split_lines(
    "This week only: {pct}% off {product}.|Free shipping on orders over {amount} dollars.|"
    "New arrivals you'll love, picked for you.|Don't miss our exclusive offer for members.|"
    "Shop the {month} sale before it ends.|Our best sellers are back in stock.|"
    "Get {pct}% off your next order with code SAVE{pct}.|Read our guide to {product}.|"
    "Limited time offer: buy one, get one free.|Join our loyalty club and earn points.|"
    "Hi {first}, we picked these {product} for you.|Top stories from {brand} this week."
)
NEWS_FOOTER = (
    "You are receiving this email because you signed up at {domain}. Unsubscribe or manage "
    "your preferences."
)
NOTIFY = (
    # (subject, lines) per notification type; phishing copies these.
    (
        "Your order #{order} has shipped",
        "Good news, your order #{order} is on its way.|"
        "Track your package with the link below.|Estimated delivery: {day}.",
    ),
    (
        "New sign-in to your {service}",
        "We noticed a new sign-in to your {service} from {city}.|"
        "If this was you, no action is needed.|If not, please secure your account.",
    ),
    (
        "Your password was changed",
        "The password for your {service} was changed on {day}.|"
        "If you did not make this change, reset your password now.",
    ),
    (
        "Your {month} statement is ready",
        "Your {month} statement is now available.|Log in to view your balance and recent activity.",
    ),
    (
        "Please verify your email address",
        "Welcome to {brand}! Please verify your email address.|"
        "Confirm your account to get started.",
    ),
    (
        "Payment received - thank you",
        "We received your payment of {amount} dollars.|Your invoice {inv} is attached.",
    ),
    (
        "Your subscription renews soon",
        "Your {brand} subscription renews on {day}.|"
        "Update your payment method to avoid interruption.",
    ),
    (
        "Delivery attempt failed",
        "We tried to deliver your parcel on {day}.|Reschedule your delivery using the link below.",
    ),
    (
        "Your verification code",
        "Your verification code is {code}.|Do not share this code with anyone.",
    ),
)
PHISH_LINES = split_lines(
    "Your {service} will be suspended within 24 hours.|Unusual activity was detected on your "
    "{service}.|Confirm your identity immediately to avoid losing access.|Your mailbox is "
    "almost full, upgrade now to keep receiving mail.|A payment of {amount} dollars failed, "
    "update your billing details.|You have a pending tax refund of {amount} dollars.|"
    "Failure to verify will result in permanent closure.|Click below to restore full access."
)
PROMO = (
    # (subject templates, lines) per promo topic; trigger words get obfuscated.
    (
        "Cheap viagra and cialis|Online pharmacy: {pct}% off pills|Best pills, no prescription",
        "Buy viagra and cialis at the lowest prices.|Our online pharmacy ships worldwide.|"
        "No prescription needed, discreet delivery.|Save {pct}% on all pills today.",
    ),
    (
        "Your casino bonus is waiting|{amount} free spins|Jackpot alert for {first}",
        "Claim your {amount} dollar casino bonus now.|Free spins every day for new players.|"
        "Hit the jackpot tonight, guaranteed payouts.",
    ),
    (
        "Approved: loan up to {amount}k|Fast cash, bad credit OK|Loan decision in minutes",
        "You are pre-approved for a loan of {amount},000 dollars.|Bad credit? No problem.|"
        "Get cash in your account within 24 hours.",
    ),
    (
        "Turn {amount} into {amount}0 with bitcoin|Investment opportunity|Guaranteed profit",
        "Our bitcoin investment plan returns {pct}% per week.|Guaranteed profit, zero risk.|"
        "Join thousands of winners making money from home.",
    ),
    (
        "Congratulations, you are a winner!|Claim your prize|You won an iPhone",
        "You have been selected as our lucky winner.|Claim your prize before {day}.|"
        "Just pay a small shipping fee to receive your prize.",
    ),
    (
        "Singles near {city} want to meet you|New dating match|Someone likes your profile",
        "Lonely? Thousands of singles are waiting.|Meet hot singles in {city} tonight.|"
        "Dating made easy, free to join.",
    ),
    (
        "Lose {amount} pounds in {pct} days|Weight loss secret|Doctors hate this trick",
        "This weight loss secret melts fat fast.|Lose weight without diet or exercise.|"
        "Guaranteed results or your money back.",
    ),
    (
        "Replica rolex {pct}% off|Luxury watches discount|Designer bags for less",
        "Top quality replica rolex watches.|Designer luxury at {pct}% discount.|"
        "Free shipping on every order, limited stock.",
    ),
    (
        "Earn {amount}0 dollars a day from home|Work from home offer|Hiring now",
        "Earn up to {amount}0 dollars per day from home.|No experience needed, free training.|"
        "Only a few positions left, apply today.",
    ),
)
FEE = (
    "Urgent business proposal|Inheritance of {amount}.5 million dollars|Confidential matter|"
    "Dear friend, I need your assistance",
    "I am barrister {first} {last}, the lawyer of a late client.|"
    "He left {amount}.5 million dollars with no next of kin.|"
    "I seek your consent to present you as the beneficiary.|"
    "You will receive 40 percent of the total sum.|Reply with your full name and phone number.",
)
BEC = (
    "are you available?|urgent request|quick favor|Re: invoice {inv}|payment today|"
    "document shared with you|Re: {doc}|check this out",
    "Are you at your desk? I need you to handle a task for me.|I'm in a meeting, reply by email."
    "|Please review the attached invoice and process the payment today.|"
    "I shared a document with you, please sign in to view it.|"
    "Can you buy some gift cards for a client? I will refund you.|"
    "Thought you might like this, have a look.|Let me know once done, it is urgent.",
)
# Vocabulary of the drifted world (``drift`` > 0): absent from the reference world.
NEW_TOPICS = (
    (
        "Claim your {brand} token airdrop|Airdrop ends {day}|Your wallet is eligible",
        "Your wallet is eligible for the {brand} airdrop.|Connect your wallet before {day} to claim."
        "|Over {amount},000 tokens already claimed.",
    ),
    (
        "Unpaid toll notice|Final notice: toll balance due|Toll payment overdue",
        "Our records show an unpaid toll of {amount}.50 dollars.|Pay your toll balance today to "
        "avoid a late fee.|The toll service will suspend your plate.",
    ),
    (
        "Action needed: two-factor disabled|Re-enable two-factor authentication",
        "Your two-factor authentication was disabled.|Re-enable two-factor protection now to keep "
        "your {service} safe.",
    ),
    (
        "AI trading bot: {pct}% a week|Let AI trading grow your savings",
        "Our AI trading bot made {pct}% last week.|AI trading does the work, you keep the profit."
        "|Start with {amount}0 dollars today.",
    ),
)
HASH_BUST = PERSON_LINES + WORK_LINES


PROMO_NEWS_PERCENT = 35  # share of newsletters (and fake ones) on spam's favourite topics


def pick(seq, x: int):
    """An element of ``seq`` chosen by the random integer ``x``."""
    return seq[x % len(seq)]


# Templates pre-split once (tuples of line lists), so per-email work is picking and formatting.
NOTIFY_T = tuple((s, split_lines(b)) for s, b in NOTIFY)
PROMO_T = tuple((split_lines(s), split_lines(b)) for s, b in PROMO)
NEW_T = tuple((split_lines(s), split_lines(b)) for s, b in NEW_TOPICS)
FEE_T = (split_lines(FEE[0]), split_lines(FEE[1]))
BEC_T = (split_lines(BEC[0]), split_lines(BEC[1]))
BEC_MIX = BEC_T[1] + WORK_LINES  # a hijacked mailbox mixes the lure with ordinary work talk


_SLOT_VALUES = {
    "day": lambda r: DAYS[r[0] % len(DAYS)],
    "event": lambda r: EVENTS[r[1] % len(EVENTS)],
    "first": lambda r: FIRST[r[2] % len(FIRST)],
    "last": lambda r: LAST[r[3] % len(LAST)],
    "city": lambda r: CITIES[r[4] % len(CITIES)],
    "month": lambda r: MONTHS[r[5] % len(MONTHS)],
    "product": lambda r: PRODUCTS[r[6] % len(PRODUCTS)],
    "doc": lambda r: DOCS[r[7] % len(DOCS)],
    "service": lambda r: SERVICES[r[8] % len(SERVICES)],
    "pct": lambda r: str(10 + r[9] % 8 * 10),
    "amount": lambda r: str(20 + r[10] % 480),
    "q": lambda r: str(1 + r[11] % 4),
    "inv": lambda r: f"INV-{r[12] % 90000 + 10000}",
    "order": lambda r: str(r[13] % 9_000_000 + 1_000_000),
    "code": lambda r: str(r[14] % 900_000 + 100_000),
    "hour": lambda r: str(9 + r[15] % 8),
}


class Slots(dict):
    """Values for the ``{placeholders}`` of the templates, drawn from ``r`` when first used."""

    def __init__(self, r: list[int], brand: str, domain: str):
        super().__init__(brand=brand, domain=domain)
        self.r = r

    def __missing__(self, key: str) -> str:
        value = self[key] = _SLOT_VALUES[key](self.r)
        return value


def fill(text: str, values: Slots) -> str:
    """``text`` with its placeholders filled (most lines have none: skip the formatting)."""
    return text.format_map(values) if "{" in text else text


def obfuscate(text: str, style: int, x: int) -> str:
    """Disguise spam trigger words: 1 l33t, 2 s p a c e d, 3 d.o.t.t.e.d, 4 split by HTML."""
    if style == 0:
        return text
    words = text.split(" ")
    for i, word in enumerate(words):
        if word.lower().strip(".,!?:") not in TRIGGER_SET or (x >> (i % 20)) & 1:
            continue
        if style == 1:
            words[i] = word.translate(LEET)
        elif style == 2:
            words[i] = " ".join(word.upper())
        elif style == 3:
            words[i] = ".".join(word)
        else:
            mid = len(word) // 2
            words[i] = f"{word[:mid]}<span>{word[mid:]}</span>"
    return " ".join(words)


TRIGGER_SET = frozenset(TRIGGERS)


def lines_from(pool: list[str], r: list[int], k: int, start: int) -> list[str]:
    """``k`` distinct-ish lines from ``pool`` (positions driven by ``r[start:]``)."""
    return list(dict.fromkeys(pick(pool, r[start + j]) for j in range(k)))


# --- composing one email ---------------------------------------------------------------------
# Text families (mirrors synthetic_world): what the email says, independent of who sends it.
F_PERSON, F_WORK, F_NEWS, F_NOTIFY, F_PROMO, F_PHISH, F_BEC, F_FEE, F_NEW = range(9)
GREETINGS = ("Hi {first},", "Hello {first},", "Dear {first},", "Hey {first},", "Hi,", "Hello,")


def compose(
    family: int, variant: int, r: list[int], brand: str, domain: str, name: str, filler: int
):
    """(subject, lines, sign-off, filler) of one email of ``family``; ``variant`` picks the
    template, ``filler`` > 0 adds that many innocuous lines to hide (spam's hash-busting)."""
    v = Slots(r, brand, domain)
    k = 1 + r[16] % 3
    if family == F_PERSON:
        subject = pick(PERSON_SUBJECTS, r[17])
        lines = [pick(GREETINGS, r[18]), *lines_from(PERSON_LINES, r, k, 19)]
        sign = name.split(" ")[0]
    elif family == F_WORK:
        subject = pick(WORK_SUBJECTS, r[17])
        lines = [pick(GREETINGS, r[18]), *lines_from(WORK_LINES, r, k + 1, 19)]
        sign = f"Best regards,\n{name}\n{brand}"
    elif family == F_NEWS:
        subject = pick(NEWS_SUBJECTS, r[17])
        lines = lines_from(NEWS_LINES, r, k + 1, 19)
        if variant % 100 < PROMO_NEWS_PERCENT:
            # Opted-in promotions (a casino, a pharmacy, a lender...) say what spam says.
            subjects, body = pick(PROMO_T, variant // 100)
            lines = [*lines_from(body, r, k, 21), *lines[:2]]
            subject = pick(subjects, r[17]) if r[17] % 2 else subject
        sign = NEWS_FOOTER
    elif family in (F_NOTIFY, F_PHISH):
        subject, body = pick(NOTIFY_T, variant)
        lines = [pick(GREETINGS, r[18]), *body]
        if family == F_PHISH:
            lines.insert(1 + r[19] % len(body), pick(PHISH_LINES, r[20]))
            if r[21] % 2:
                lines.append(pick(PHISH_LINES, r[22]))
        sign = f"The {brand} team"
    elif family == F_PROMO:
        subjects, body = pick(PROMO_T, variant)
        subject = pick(subjects, r[17])
        lines = lines_from(body, r, k + 1, 19)
        sign = pick(("Best wishes", "Regards", "Support team", brand), r[23])
    elif family == F_BEC:
        subjects, body = BEC_T
        subject = pick(subjects, r[17])
        lines = [pick(GREETINGS, r[18]), *lines_from(BEC_MIX, r, k + 1, 19)]
        sign = name.split(" ")[0] if r[23] % 2 else f"Best regards,\n{name}"
    elif family == F_FEE:
        subjects, body = FEE_T
        subject = pick(subjects, r[17])
        lines = [pick(GREETINGS, r[18]), *body[: 2 + k]]
        sign = f"Barrister {v['first']} {v['last']}"
    else:  # F_NEW
        subjects, body = pick(NEW_T, variant)
        subject = pick(subjects, r[17])
        lines = list(body)
        sign = brand
    hidden = fill(" ".join(pick(HASH_BUST, r[20 + j]) for j in range(filler)), v)
    return fill(subject, v), [fill(line, v) for line in lines], fill(sign, v), hidden
