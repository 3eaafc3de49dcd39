"""The prompt catalog (prompts/*.toml): the languages agree, prompts render in words with the
right voice, and broken catalogs are refused with CatalogError."""

from __future__ import annotations

import datetime
import string
import tomllib
from importlib import resources

import pytest

from ivr import catalog
from ivr.catalog import Catalog, CatalogError, Segment, Voice
from ivr.state import LANGS, Digits, Money, Month, Say, Term, When

TODAY = datetime.date(2026, 11, 23)
CMN, EN = "cmn-CN", "en-US"


@pytest.fixture(scope="module")
def prompts() -> Catalog:
    return catalog.load()


def raw(lang: str) -> dict[str, object]:
    text = resources.files("ivr.prompts").joinpath(f"{lang}.toml").read_text("utf-8")
    return tomllib.loads(text)


def fields(template: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}


def text_of(value: object) -> str:
    return value if isinstance(value, str) else value["text"]  # type: ignore[index]


# --- the packaged files -------------------------------------------------------------


def test_both_language_files_have_the_same_keys_and_placeholders() -> None:
    # read straight from the files, not through catalog.check, so this can fail on its own
    tables = {lang: raw(lang)["prompts"] for lang in LANGS}
    cmn, en = tables[CMN], tables[EN]
    assert isinstance(cmn, dict) and isinstance(en, dict)
    assert sorted(cmn) == sorted(en)
    assert len(cmn) > 30
    for key in cmn:
        assert fields(text_of(cmn[key])) == fields(text_of(en[key])), key


def test_each_file_sets_its_language_and_voice_once(prompts: Catalog) -> None:
    assert prompts.voices == {CMN: Voice(CMN, "Polly.Zhiyu"), EN: Voice(EN, "Polly.Joanna")}
    for lang in LANGS:
        assert raw(lang)["meta"]["language"] == lang  # type: ignore[index]


# --- rendering ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lang", "amount", "spoken"),
    [
        (CMN, "1234.56", "您的医保个人账户余额为一千二百三十四元五角六分。"),
        (CMN, "1005.07", "您的医保个人账户余额为一千零五元零七分。"),
        (CMN, "100.00", "您的医保个人账户余额为一百元整。"),
        (EN, "1234.56", "Your personal account balance is 1,234.56 yuan."),
        (EN, "100.00", "Your personal account balance is 100.00 yuan."),
    ],
)
def test_the_balance_is_read_in_words(
    prompts: Catalog, lang: str, amount: str, spoken: str
) -> None:
    segment = prompts.render(Say.of("balance.amount", amount=Money(amount)), lang, TODAY)
    assert segment == Segment(spoken, prompts.voices[lang])


def transaction(time: str) -> Say:
    return Say.of(
        "transactions.item", n=2, count=3, date=When(time), place="北京协和医院",
        category=Term("category.outpatient"), total=Money("500.00"), pooled=Money("300.00"),
        personal=Money("150.00"), cash=Money("50.00"),
    )  # fmt: skip


def test_a_transaction_reads_every_part_in_mandarin(prompts: Catalog) -> None:
    text = prompts.render(transaction("2026-11-20T10:15:00+08:00"), CMN, TODAY).text
    assert text == (
        "第2条，共3条。11月20日，北京协和医院，门诊，总金额五百元整，其中统筹基金支付三百元整，"
        "个人账户支付一百五十元整，现金支付五十元整。"
    )


def test_a_transaction_reads_every_part_in_english(prompts: Catalog) -> None:
    text = prompts.render(transaction("2026-11-20T10:15:00+08:00"), EN, TODAY).text
    assert text == (
        "Record 2 of 3. November 20, 北京协和医院, outpatient care. Total 500.00 yuan: the pooled "
        "fund paid 300.00 yuan, your personal account paid 150.00 yuan, and you paid 50.00 yuan "
        "in cash."
    )


@pytest.mark.parametrize(
    ("lang", "time", "date"),
    [
        (CMN, "2026-11-20T10:15:00+08:00", "11月20日，"),
        (CMN, "2025-12-31T23:00:00+08:00", "2025年12月31日，"),
        (EN, "2026-11-20T10:15:00+08:00", "November 20, 北京"),
        (EN, "2025-12-31T23:00:00+08:00", "December 31, 2025, 北京"),
    ],
)
def test_a_date_has_its_year_only_when_not_this_year(
    prompts: Catalog, lang: str, time: str, date: str
) -> None:
    text = prompts.render(transaction(time), lang, TODAY).text
    assert date in text
    if "2025" not in date:
        assert "2026" not in text


def test_a_prompt_in_the_other_language_gets_that_languages_voice(prompts: Catalog) -> None:
    in_mandarin = prompts.render(Say("main.other_language"), CMN, TODAY)
    in_english = prompts.render(Say("main.other_language"), EN, TODAY)
    assert in_mandarin == Segment("For English service, press 9.", Voice(EN, "Polly.Joanna"))
    assert in_english == Segment("普通话服务请按9。", Voice(CMN, "Polly.Zhiyu"))
    assert prompts.render(Say("main.menu"), CMN, TODAY).voice == Voice(CMN, "Polly.Zhiyu")


def test_an_unknown_prompt_or_a_missing_value_is_a_catalog_error(prompts: Catalog) -> None:
    with pytest.raises(CatalogError, match=r"no prompt 'balance\.nothing' in en-US"):
        prompts.render(Say("balance.nothing"), EN, TODAY)
    with pytest.raises(CatalogError, match=r"balance.amount \(cmn-CN\): no value for 'amount'"):
        prompts.render(Say("balance.amount"), CMN, TODAY)


# --- a small catalog of our own, for the kinds the packaged prompts do not use yet -------


def catalog_file(lang: str, prompts: str, voice: str = "V", meta_lang: str | None = None) -> str:
    return f'[meta]\nlanguage = "{meta_lang or lang}"\nvoice = "{voice}"\n\n[prompts]\n{prompts}\n'


def small(cmn: str, en: str) -> dict[str, str]:
    return {CMN: catalog_file(CMN, cmn, "Zh"), EN: catalog_file(EN, en, "En")}


KINDS = small(
    'card = "卡号{card}。"\nmonth = "{month}的缴费。"\nwhen = "{when}。"\ncount = "共{n}条。"\n'
    'term = "{what}"\nt = "住院"',
    'card = "Card {card}."\nmonth = "Paid for {month}."\nwhen = "{when}."\ncount = "{n} records."\n'
    'term = "{what}"\nt = "hospital stay"',
)


@pytest.mark.parametrize(
    ("say", "cmn", "en"),
    [
        (Say.of("card", card=Digits("1000001")), "卡号1 0 0 0 0 0 1。", "Card 1 0 0 0 0 0 1."),
        (Say.of("month", month=Month("2026-10")), "2026年10月的缴费。", "Paid for October 2026."),
        (Say.of("month", month=Month("2025-01")), "2025年1月的缴费。", "Paid for January 2025."),
        (
            Say.of("when", when=When("2026-11-20T10:15:00+08:00", with_time=True)),
            "11月20日 10点15分。", "November 20 10:15 AM.",
        ),
        (Say.of("when", when=When("2024-02-29")), "2024年2月29日。", "February 29, 2024."),
        (Say.of("count", n=1234), "共1234条。", "1,234 records."),
        (Say.of("term", what=Term("t")), "住院", "hospital stay"),
    ],
)
def test_values_are_read_in_the_callers_language(say: Say, cmn: str, en: str) -> None:
    small_catalog = catalog.load(KINDS)
    assert small_catalog.render(say, CMN, TODAY) == Segment(cmn, Voice(CMN, "Zh"))
    assert small_catalog.render(say, EN, TODAY) == Segment(en, Voice(EN, "En"))


# --- broken catalogs ----------------------------------------------------------------


BROKEN = [
    pytest.param(
        small('a = "x"\nb = "y"', 'a = "x"'), "'b' is missing from en-US", id="missing-in-en"
    ),
    pytest.param(
        small('a = "x"', 'a = "x"\nb = "y"'), "'b' is missing from cmn-CN", id="missing-in-cmn"
    ),
    pytest.param(
        small('a = "余额{amount}"', 'a = "Balance {total}"'),
        "prompt a: placeholders differ", id="other-placeholder",
    ),
    pytest.param(
        small('a = "余额{amount}"', 'a = "Balance"'),
        "prompt a: placeholders differ", id="no-placeholder",
    ),
    pytest.param(
        {CMN: catalog_file(CMN, 'a = "x"', meta_lang=EN), EN: catalog_file(EN, 'a = "x"')},
        "cmn-CN.toml: [meta] needs language", id="meta-other-language",
    ),
    pytest.param(
        {CMN: catalog_file(CMN, 'a = "x"', voice=""), EN: catalog_file(EN, 'a = "x"')},
        "cmn-CN.toml: [meta] needs language = 'cmn-CN' and voice", id="meta-no-voice",
    ),
    pytest.param(
        {CMN: catalog_file(CMN, 'a = "x"'), EN: '[prompts]\na = "x"\n'},
        "en-US.toml: [meta] needs", id="no-meta",
    ),
    pytest.param(small('a = 3', 'a = "x"'), "cmn-CN.toml: a must be text", id="not-text"),
    pytest.param(
        small('a = { text = "x", language = "fr-FR" }', 'a = "x"'),
        "prompt a (cmn-CN): no voice for fr-FR", id="unknown-voice",
    ),
    pytest.param(small('a = "x', 'a = "x"'), "cmn-CN.toml is not valid TOML", id="not-toml"),
    pytest.param(
        small('a = "余额{amount"', 'a = "Balance {amount}"'), "cmn-CN.toml: a", id="open-brace"
    ),
    pytest.param(
        small('a = "余额{}"', 'a = "Balance {}"'), "cmn-CN.toml: a", id="unnamed-placeholder"
    ),
]


@pytest.mark.parametrize(("files", "message"), BROKEN)
def test_a_broken_catalog_is_refused(files: dict[str, str], message: str) -> None:
    with pytest.raises(CatalogError) as caught:
        catalog.load(files)
    assert message in str(caught.value)


def test_the_small_catalogs_differ_from_a_good_one_only_where_broken() -> None:
    good = catalog.load(small('a = "余额{amount}"\nb = "y"', 'a = "Balance {amount}"\nb = "y"'))
    assert good.render(Say.of("a", amount=Money("1.50")), CMN, TODAY).text == "余额一元五角"
    assert good.render(Say.of("a", amount=Money("1.50")), EN, TODAY).text == "Balance 1.50 yuan"
