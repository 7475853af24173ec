"""Static reference tables of the synthetic payments world: countries, merchant categories, decline codes.

These are facts of the simulated world, not tuning knobs (those live in `config.py`). Every table is a
tuple of rows so the world builder can turn it into numpy arrays once; nothing here is random.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Country:
    """One country of the world.

    Attributes:
        code: ISO alpha-2 code (`merchant_country`, `card_country`).
        currency: ISO 4217 code merchants of this country charge in.
        fx: units of `currency` per USD (amounts are simulated in USD, written in local currency).
        utc_offset: hours; customers live in local time, `ts` is UTC.
        customer_share: share of cards issued here (0 = no issuers, a merchant-only country).
        merchant_share: share of merchants located here.
        travel_weight: how often travellers go there.
        fraud_weight: risk multiplier of its merchants as a fraud destination (takeovers, cloned cards):
            fraudsters go where merchants are, `merchant_share * fraud_weight`.
        cities: a few city names for merchant descriptors.
    """

    code: str
    currency: str
    fx: float
    utc_offset: float
    customer_share: float
    merchant_share: float
    travel_weight: float
    fraud_weight: float
    cities: tuple[str, ...]


COUNTRIES: tuple[Country, ...] = (
    Country("US", "USD", 1.0, -5, 0.62, 0.52, 0.1, 1, ("NEW YORK NY", "AUSTIN TX", "SEATTLE WA", "CHICAGO IL", "MIAMI FL", "DENVER CO")),
    Country("GB", "GBP", 0.79, 0, 0.08, 0.07, 0.1, 1, ("LONDON", "MANCHESTER", "LEEDS", "BRISTOL")),
    Country("CA", "CAD", 1.35, -5, 0.06, 0.05, 0.08, 1, ("TORONTO ON", "VANCOUVER BC", "MONTREAL QC")),
    Country("DE", "EUR", 0.92, 1, 0.05, 0.05, 0.06, 1, ("BERLIN", "MUENCHEN", "HAMBURG", "KOELN")),
    Country("FR", "EUR", 0.92, 1, 0.04, 0.04, 0.12, 1, ("PARIS", "LYON", "MARSEILLE", "NICE")),
    Country("MX", "MXN", 17.0, -6, 0.04, 0.04, 0.1, 2, ("CIUDAD DE MEXICO", "CANCUN", "GUADALAJARA")),
    Country("BR", "BRL", 5.0, -3, 0.04, 0.03, 0.04, 3, ("SAO PAULO", "RIO DE JANEIRO", "CURITIBA")),
    Country("IN", "INR", 83.0, 5.5, 0.03, 0.03, 0.03, 2, ("MUMBAI", "BENGALURU", "DELHI")),
    Country("JP", "JPY", 150.0, 9, 0.02, 0.03, 0.06, 0.5, ("TOKYO", "OSAKA", "KYOTO")),
    Country("AU", "AUD", 1.52, 10, 0.02, 0.02, 0.04, 0.5, ("SYDNEY", "MELBOURNE", "BRISBANE")),
    Country("NL", "EUR", 0.92, 1, 0.0, 0.02, 0.04, 2, ("AMSTERDAM", "ROTTERDAM")),
    Country("ES", "EUR", 0.92, 1, 0.0, 0.02, 0.1, 1, ("MADRID", "BARCELONA", "SEVILLA")),
    Country("IT", "EUR", 0.92, 1, 0.0, 0.02, 0.09, 1, ("ROMA", "MILANO", "FIRENZE")),
    Country("CN", "CNY", 7.2, 8, 0.0, 0.015, 0.03, 3, ("SHANGHAI", "SHENZHEN")),
    Country("HK", "HKD", 7.8, 8, 0.0, 0.012, 0.03, 3, ("HONG KONG",)),
    Country("SG", "SGD", 1.34, 8, 0.0, 0.012, 0.03, 2, ("SINGAPORE",)),
    Country("AE", "AED", 3.67, 4, 0.0, 0.012, 0.04, 3, ("DUBAI", "ABU DHABI")),
    Country("NG", "NGN", 1400.0, 1, 0.0, 0.01, 0.01, 4, ("LAGOS", "ABUJA")),
    Country("RO", "RON", 4.6, 2, 0.0, 0.01, 0.02, 4, ("BUCURESTI", "CLUJ")),
    Country("TR", "TRY", 32.0, 3, 0.0, 0.01, 0.04, 3, ("ISTANBUL", "ANKARA")),
)
# Currencies without minor units are rounded to whole units.
ZERO_DECIMAL_CURRENCIES = frozenset({"JPY"})


@dataclass(frozen=True)
class Category:
    """A merchant category (one MCC family).

    Attributes:
        key: short name used in code and docs.
        mccs: MCC codes its merchants use (one per merchant).
        weight: share of ordinary purchases (0 for subscription-only categories).
        merchant_share: share of merchants in this category.
        median_usd, sigma: log-normal purchase amount (median in USD, sigma of log amount).
        online_share: probability a purchase in this category is ecommerce (vs card present).
        hours: index into HOUR_PROFILES (local time of day of purchases).
        refund_rate: probability an approved purchase is refunded later.
        risky: issuers treat it as high risk (gambling, crypto, money transfer).
        fraud_weight: how often fraudsters cash out here (card testing, takeover, compromise).
        recurring: subscription category, billed monthly on the `recurring` channel.
        skimming: card-present merchants whose terminals can be compromised.
        testing: small online merchants fraudsters use to test stolen cards.
        chain_share: share of its merchants that are branches of a chain brand.
        brands: chain brands (descriptor prefixes).
        style: descriptor layout (see world.py `_descriptor`).
        suffixes: words for names of independent merchants.
    """

    key: str
    mccs: tuple[str, ...]
    weight: float
    merchant_share: float
    median_usd: float
    sigma: float
    online_share: float
    hours: int
    refund_rate: float = 0.0
    risky: bool = False
    fraud_weight: float = 0.0
    recurring: bool = False
    skimming: bool = False
    testing: bool = False
    chain_share: float = 0.3
    brands: tuple[str, ...] = ()
    style: str = "store"
    suffixes: tuple[str, ...] = ("SHOP",)


# Hour-of-day profiles (local time), relative weights per hour 0..23.
DAY, MEAL, COMMUTE, EVENING, NIGHT = range(5)
HOUR_PROFILES = np.array(
    [
        [1, 0, 0, 0, 0, 1, 2, 4, 6, 8, 10, 11, 12, 12, 11, 11, 11, 11, 10, 8, 6, 4, 2, 1],
        [1, 0, 0, 0, 0, 1, 3, 6, 6, 3, 3, 8, 14, 12, 5, 3, 4, 8, 12, 13, 9, 5, 3, 2],
        [1, 0, 0, 0, 1, 3, 8, 12, 10, 6, 5, 5, 6, 6, 5, 6, 9, 12, 11, 7, 5, 3, 2, 1],
        [3, 2, 1, 1, 1, 1, 2, 3, 4, 5, 6, 6, 7, 7, 6, 6, 7, 8, 10, 12, 13, 12, 9, 5],
        [8, 7, 5, 3, 2, 1, 1, 1, 2, 3, 3, 4, 4, 4, 4, 4, 5, 6, 7, 8, 10, 11, 11, 10],
    ],
    dtype=np.float64,
)

CATEGORIES: tuple[Category, ...] = (
    Category("grocery", ("5411",), 0.19, 0.10, 42, 0.75, 0.04, DAY, 0.005, skimming=True, chain_share=0.6,
             brands=("KROGER", "SAFEWAY", "WHOLEFDS MKT", "TRADER JOE S", "ALDI", "PUBLIX SUPER MKT"), suffixes=("MARKET", "FOODS", "GROCERY")),
    Category("fuel", ("5541", "5542"), 0.09, 0.06, 38, 0.45, 0.0, COMMUTE, 0.002, skimming=True, chain_share=0.9,
             brands=("SHELL OIL", "CHEVRON", "EXXONMOBIL", "BP", "SUNOCO", "7-ELEVEN"), style="fuel", suffixes=("GAS", "FUEL STOP")),
    Category("restaurant", ("5812",), 0.11, 0.16, 32, 0.65, 0.04, MEAL, 0.003, skimming=True, fraud_weight=0.03, chain_share=0.15,
             brands=("OLIVE GARDEN", "CHEESECAKE FACTORY", "APPLEBEES"), style="pos", suffixes=("GRILL", "KITCHEN", "BISTRO", "CAFE", "TAVERN")),
    Category("fast_food", ("5814",), 0.12, 0.10, 11, 0.5, 0.15, MEAL, 0.002, skimming=True, chain_share=0.7,
             brands=("MCDONALD'S", "STARBUCKS STORE", "CHIPOTLE", "SUBWAY", "TACO BELL", "DUNKIN"), suffixes=("BURGERS", "COFFEE", "PIZZA", "DELI")),
    Category("pharmacy", ("5912",), 0.05, 0.04, 22, 0.8, 0.05, DAY, 0.01, skimming=True, chain_share=0.7,
             brands=("CVS/PHARMACY", "WALGREENS", "RITE AID"), suffixes=("PHARMACY", "DRUG")),
    Category("department", ("5311",), 0.04, 0.04, 65, 0.9, 0.3, DAY, 0.06, fraud_weight=0.12, chain_share=0.7,
             brands=("TARGET", "MACY'S", "KOHL'S", "NORDSTROM")),
    Category("clothing", ("5651", "5691"), 0.04, 0.07, 55, 0.8, 0.45, DAY, 0.10, fraud_weight=0.08, chain_share=0.4,
             brands=("H&M", "ZARA", "GAP", "UNIQLO", "OLD NAVY"), suffixes=("BOUTIQUE", "APPAREL", "OUTFITTERS")),
    Category("electronics", ("5732",), 0.03, 0.03, 140, 1.0, 0.5, DAY, 0.06, fraud_weight=0.18, chain_share=0.5,
             brands=("BEST BUY", "APPLE STORE", "MICRO CENTER", "NEWEGG"), suffixes=("ELECTRONICS", "TECH", "MOBILE")),
    Category("marketplace", ("5999", "5969"), 0.08, 0.04, 28, 1.0, 1.0, EVENING, 0.05, fraud_weight=0.25, chain_share=0.0,
             brands=("AMZN MKTP US", "EBAY O", "ETSY.COM", "WALMART.COM", "TEMU.COM"), style="web_suffix", suffixes=("ONLINE", "STORE")),
    Category("digital", ("5815", "5816", "5818"), 0.05, 0.04, 4, 0.9, 1.0, EVENING, 0.01, testing=True, fraud_weight=0.08, chain_share=0.0,
             brands=("APPLE.COM/BILL", "GOOGLE *PLAY", "STEAMGAMES.COM", "MICROSOFT*STORE"), style="web", suffixes=("GAMES", "APPS", "MEDIA")),
    Category("rideshare", ("4121",), 0.04, 0.02, 19, 0.55, 1.0, COMMUTE, 0.01, chain_share=0.0,
             brands=("UBER", "LYFT", "BOLT.EU", "CURB"), style="ride", suffixes=("TAXI", "CAB")),
    Category("transit", ("4111",), 0.03, 0.02, 3.5, 0.5, 0.3, COMMUTE, 0.0, chain_share=0.0, style="city", suffixes=("TRANSIT", "METRO", "RAIL")),
    Category("hotel", ("7011",), 0.01, 0.03, 170, 0.6, 0.5, DAY, 0.03, fraud_weight=0.04, chain_share=0.6,
             brands=("MARRIOTT", "HILTON", "HYATT", "HOLIDAY INN", "BOOKING.COM"), style="city", suffixes=("HOTEL", "INN", "SUITES")),
    Category("airline", ("4511",), 0.006, 0.01, 320, 0.7, 1.0, DAY, 0.05, fraud_weight=0.05, chain_share=0.0,
             brands=("UNITED", "DELTA AIR", "AMERICAN AIR", "LUFTHANSA", "AIR FRANCE", "BRITISH AWYS"), style="ticket", suffixes=("AIR", "AIRWAYS")),
    Category("entertainment", ("7832", "7922"), 0.02, 0.03, 24, 0.5, 0.5, EVENING, 0.02, chain_share=0.3,
             brands=("AMC", "REGAL CINEMAS", "TICKETMASTER"), suffixes=("CINEMA", "THEATRE", "TICKETS")),
    Category("home_improvement", ("5200",), 0.03, 0.03, 60, 1.0, 0.2, DAY, 0.05, chain_share=0.6,
             brands=("THE HOME DEPOT", "LOWES", "MENARDS"), suffixes=("HARDWARE", "SUPPLY")),
    Category("wholesale", ("5300",), 0.02, 0.01, 110, 0.7, 0.1, DAY, 0.02, chain_share=0.9,
             brands=("COSTCO WHSE", "SAMS CLUB", "BJS WHOLESALE")),
    Category("jewelry", ("5944",), 0.006, 0.02, 250, 1.0, 0.4, DAY, 0.04, fraud_weight=0.06, chain_share=0.3,
             brands=("KAY JEWELERS", "ZALES", "TIFFANY"), suffixes=("JEWELERS", "GOLD", "DIAMONDS")),
    Category("crypto", ("6051",), 0.005, 0.01, 150, 1.0, 1.0, NIGHT, 0.0, risky=True, fraud_weight=0.05, chain_share=0.0,
             brands=("COINBASE", "BINANCE.COM", "KRAKEN"), style="web", suffixes=("COIN", "CRYPTO", "EXCHANGE")),
    Category("money_transfer", ("4829",), 0.008, 0.01, 120, 0.9, 1.0, EVENING, 0.0, risky=True, fraud_weight=0.06, chain_share=0.0,
             brands=("WESTERN UNION", "REMITLY", "WISE", "MONEYGRAM"), style="web", suffixes=("TRANSFER", "REMIT")),
    Category("gambling", ("7995",), 0.004, 0.01, 45, 1.0, 0.8, NIGHT, 0.0, risky=True, chain_share=0.0,
             brands=("DRAFTKINGS", "FANDUEL", "BET365"), style="web", suffixes=("CASINO", "BETS")),
    Category("charity", ("8398",), 0.003, 0.02, 25, 0.8, 1.0, EVENING, 0.0, testing=True, chain_share=0.0,
             style="web", suffixes=("FOUNDATION", "RELIEF FUND", "CHARITY")),
    # Subscriptions: billed monthly on the recurring channel, never sampled as ordinary purchases.
    Category("streaming", ("4899",), 0.0, 0.01, 14, 0.35, 1.0, NIGHT, recurring=True, chain_share=0.0,
             brands=("NETFLIX.COM", "SPOTIFY USA", "HULU", "DISNEY PLUS"), style="web", suffixes=("TV", "STREAM")),
    Category("telecom", ("4814",), 0.0, 0.01, 70, 0.4, 1.0, NIGHT, recurring=True, chain_share=0.0,
             brands=("VERIZON WRLS", "AT&T", "T-MOBILE", "VODAFONE"), style="web", suffixes=("MOBILE", "TELECOM")),
    Category("utilities", ("4900",), 0.0, 0.01, 110, 0.5, 1.0, NIGHT, recurring=True, chain_share=0.0,
             brands=("CON EDISON", "PG&E", "DUKE ENERGY"), style="web", suffixes=("POWER", "WATER", "ENERGY")),
    Category("gym", ("7997",), 0.0, 0.01, 35, 0.5, 1.0, NIGHT, recurring=True, chain_share=0.0,
             brands=("PLANET FITNESS", "EQUINOX", "LA FITNESS"), style="web", suffixes=("FITNESS", "GYM")),
    Category("software", ("5734",), 0.0, 0.01, 12, 0.6, 1.0, NIGHT, recurring=True, chain_share=0.0,
             brands=("ADOBE", "DROPBOX", "MICROSOFT*365", "OPENAI"), style="web", suffixes=("SOFTWARE", "CLOUD")),
    Category("insurance", ("6300",), 0.0, 0.01, 140, 0.5, 1.0, NIGHT, recurring=True, chain_share=0.0,
             brands=("GEICO", "STATE FARM", "PROGRESSIVE"), style="web", suffixes=("INSURANCE", "MUTUAL")),
)
CATEGORY_INDEX = {c.key: i for i, c in enumerate(CATEGORIES)}
# Month-to-month variation of subscription bills (utilities vary, streaming does not).
RECURRING_VARIATION = {"utilities": 0.2, "telecom": 0.03}

# Words for names of independent merchants: "{adjective} {noun} {category suffix}".
NAME_ADJECTIVES = ("BLUE", "GOLDEN", "RED", "SILVER", "HAPPY", "OLD", "NEW", "GREEN", "SUNNY", "ROYAL",
                   "LITTLE", "BIG", "NORTH", "SOUTH", "EAST", "WEST", "GRAND", "LUCKY", "URBAN", "PRIME")
NAME_NOUNS = ("OAK", "RIVER", "DRAGON", "LION", "HARBOR", "MAPLE", "STAR", "BRIDGE", "PINE", "EAGLE",
              "FOX", "STONE", "LOTUS", "CEDAR", "BEAR", "ORCHID", "MESA", "HARVEST", "SUMMIT", "BAY")
# Payment-processor prefixes small merchants show up with.
POS_PREFIXES = ("SQ *", "TST* ", "SP * ", "")

CHANNELS = ("card_present", "ecommerce", "recurring")
CARD_PRESENT, ECOMMERCE, RECURRING = range(3)

EVENT_TYPES = ("charge", "decline", "refund", "dispute")
CHARGE, DECLINE, REFUND, DISPUTE = range(4)

# Decline codes in the priority order the issuer applies them (the first reason that fires wins).
DECLINE_CODES = ("91", "N7", "54", "14", "57", "65", "59", "05", "51")
(CODE_UNAVAILABLE, CODE_CVV, CODE_EXPIRED, CODE_INVALID_CARD, CODE_NOT_PERMITTED, CODE_VELOCITY,
 CODE_FRAUD, CODE_DO_NOT_HONOUR, CODE_FUNDS) = range(len(DECLINE_CODES))

# Pay schedules (when funds refill): weights of customers on each.
PAY_SCHEDULES = ("monthly", "semi_monthly", "biweekly_a", "biweekly_b", "weekly")
PAY_SCHEDULE_WEIGHTS = (0.3, 0.3, 0.17, 0.18, 0.05)
