"""The pure pipeline: normalisation evasions, rule packs, verdicts, bad input (no database)."""

from __future__ import annotations

import unicodedata
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shequn.moderation import classifier
from shequn.moderation.classifier import (
    CLIP,
    NaiveBayes,
    default_model,
    lr_features,
    train_logistic,
    train_naive_bayes,
)
from shequn.moderation.normalize import normalise
from shequn.moderation.pipeline import MessageContext, Moderator, external_checker, set_external_checker
from shequn.moderation.rules import RulePackError, cached_pack, compile_pack, parse_pack


@pytest.fixture(scope="module")
def mod() -> Moderator:
    return Moderator()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("加我薇信", "加我微信"),
        ("加我威信", "加我微信"),
        ("加我徽信", "加我微信"),
        ("加我V信", "加我微信"),
        ("➕V 领福利", "加微信 领福利"),
        ("+vx", "加微信"),
        ("ＶＸ", "微信"),
        ("v x", "微信"),
        ("加\u200b微\u200d信", "加微信"),
        ("兼❤职", "兼职"),
        ("刷*单", "刷单"),
        ("加 微 信", "加微信"),
        ("兼職刷單", "兼职刷单"),
        ("ＡＢＣ", "abc"),
        ("加薇信", "加微信"),  # not 加微信信: "加薇" is a variant too
        ("加V信 abc123", "加微信 abc123"),
        ("+v信", "加微信"),
        ("Bеst оnline cаsino", "best online casino"),  # Cyrillic е, о, а
        ("ᴏɴʟɪɴᴇ ᴄᴀsɪɴᴏ", "online casino"),  # small capitals
        ("Привет всем", "привет всем"),  # a Russian word without Latin letters stays Russian
        ("Καλημέρα", "καλημέρα"),
    ],
)
def test_normalise_folds_evasions(raw: str, expected: str) -> None:
    assert normalise(raw).text == expected


def test_normalise_digits_and_phone_runs() -> None:
    assert normalise("①③⑧").text == "138"
    assert normalise("❶❸❽").text == "138"
    assert normalise("１３８ ００１３ ８０００").digit_runs == ["13800138000"]
    assert normalise("1 3 8 0 0 1 3 8 0 0 0").digit_runs == ["13800138000"]
    assert normalise("幺三八零零一三八零零零").digit_runs == ["13800138000"]


def test_ascii_variants_only_as_whole_tokens() -> None:
    assert normalise("vxlan").text == "vxlan"
    assert normalise("蔷薇花园").text == "蔷薇花园"  # 薇 alone is not 微信


def test_urls_mentions_emails_are_lifted() -> None:
    n = normalise("看 https://www.Bit.ly/abc 和 foo.example.com 找 @小王 或 a.b@x.com")
    assert n.hosts == ["bit.ly", "foo.example.com"]
    assert n.mentions == 1
    assert n.emails == ["a.b@x.com"]
    assert "bit.ly" not in n.text


def test_bare_links_on_spam_top_level_domains_are_lifted() -> None:
    n = normalise("速领 fuli-888.icu/x 或 cash.online 再看 rb.gy/abc")
    assert n.hosts == ["fuli-888.icu", "cash.online", "rb.gy"]
    assert normalise("node.js and v1.2 are fine").hosts == ()


@given(st.text(max_size=300))
@settings(max_examples=300, deadline=None)
def test_normalise_never_raises_and_strips_format_chars(text: str) -> None:
    out = normalise(text)
    assert isinstance(out.text, str)
    out.text.encode("utf-8")  # no lone surrogates survive
    assert not any(unicodedata.category(c) == "Cf" for c in out.text)


@given(st.one_of(st.text(max_size=200), st.binary(max_size=200), st.none(), st.integers()))
@settings(max_examples=200, deadline=None)
def test_classify_any_input_gets_a_verdict(raw: object) -> None:
    v = Moderator().classify(raw)
    assert v.verdict in ("ad", "ok", "review")
    assert 0.0 <= v.score <= 1.0


@pytest.mark.parametrize(
    "raw",
    ["", "   ", "x" * 100_000, "加微信" * 40_000, "\x00\x01\x02\x03\x04\x05\x06\x07\x08\x0e\x0f" * 50,
     "a\ud800b\udfff", "\u200b" * 1000, b"\xff\xfe\x00binary"],
)
def test_bad_input_gets_a_verdict(mod: Moderator, raw: object) -> None:
    v = mod.classify(raw)
    assert v.verdict in ("ad", "ok", "review")


def test_binary_looking_message_goes_to_review(mod: Moderator) -> None:
    v = mod.classify("\x00\x01\x02\x03\x04\x05\x06\x07\x08\x0e\x0f\x10 hello there " * 3)
    assert v.verdict == "review"
    assert v.category == "binary"


def test_long_message_is_truncated_not_dropped(mod: Moderator) -> None:
    v = mod.classify("兼职刷单日结300加微信abc12345 " + "正常内容" * 30_000)
    assert v.verdict == "ad"
    assert "truncated" in v.flags


@pytest.mark.parametrize(
    "text",
    [
        "需要的加我薇信 abc12345，私聊",
        "兼❤职刷单，日结300，在家就能做，加V：vip_8888",
        "帮我砍一刀吧 https://mobile.yangkeduo.com/goods.html?ps=abc",
        "恭喜您中奖了，点击领取 https://t.cn/abc123",
        "Work from home and earn $300 per day, no experience needed, DM me",
        "急用錢的看過來，無抵押秒下款，加➕V abc666",
        "百家乐稳赚不赔，日赚1000，加 w x : l u c k y 8 8 8",
        "Share this to 8 friends and claim your free credit",  # chain message (regex, any count)
        "Bеst оnline cаsino, free spins on signup",  # Cyrillic look-alikes
        "出售实名快手号，可过户，量大优惠",  # account trading
    ],
)
def test_ads_are_caught(mod: Moderator, text: str) -> None:
    v = mod.classify(text)
    assert v.verdict == "ad", v.reasons
    assert v.category is not None
    assert any(r["rule"] != "classifier" for r in v.reasons)


@pytest.mark.parametrize(
    "text",
    [
        "导航发你了，到了打我电话 13912345678",
        "群里投票选一下下次聚会的地点吧：1 西湖 2 莫干山",
        "这款精华280块值吗，有用过的姐妹说说",
        "4S店砍价砍了两万，最后落地十六万八",
        "我把路线图放在 https://github.com/club/routes 了",
        "大家不要加陌生人微信，最近有骗子冒充群主",
        "Meet at the parking lot at 8am on Saturday",
        "闲置的儿童餐椅送给有需要的邻居，私聊我",  # contact words alone, giving something away
        "又有人在群里发日结的兼职广告，大家别信",  # a warning quoting the scam's words
        "Found a grey cat near the park, message me to claim her",
        "路书在这 https://www.amap.com/dir?from=abc 周六按这个走",  # any link used to get +2.0 (term t.me)
    ],
)
def test_hard_negatives_pass(mod: Moderator, text: str) -> None:
    assert mod.classify(text).verdict == "ok"


def test_reasons_name_rules_and_spans(mod: Moderator) -> None:
    v = mod.classify("帮我砍一刀吧")
    hit = next(r for r in v.reasons if r["rule"] == "bargain.term.砍一刀")
    assert hit["span"] == [2, 5]
    assert hit["matched"] == "砍一刀"


def test_behaviour_signals_raise_the_score(mod: Moderator) -> None:
    text = "大家看看这个 http://some-new-site.xyz/p"
    trusted = mod.classify(text, MessageContext(member_joined_days=90, message_index=500))
    newbie = mod.classify(text, MessageContext(member_joined_days=0.1, message_index=0))
    dup = mod.classify(text, MessageContext(member_joined_days=0.1, message_index=0, same_text_other_groups=3))
    assert trusted.score < newbie.score < dup.score
    assert any(r["rule"] == "signal.duplicate_across_groups" for r in dup.reasons)
    assert dup.signals >= 1


@pytest.mark.parametrize("text", ["签到", "已下单", "谢谢老师解答 🙏", "打卡 第 12 天", "刚做完保养, 这家店师傅很专业"])
def test_bland_text_in_several_groups_is_not_a_spam_wave(mod: Moderator, text: str) -> None:
    """Members post check-ins and thanks in every group they are in: the duplicate signal needs
    something worth spreading (a link, contact details, ad wording)."""
    ctx = MessageContext(member_joined_days=30, message_index=40, same_text_other_groups=3)
    v = mod.classify(text, ctx)
    assert v.verdict == "ok"
    assert not any(r["rule"] == "signal.duplicate_across_groups" for r in v.reasons)
    assert v.signals == 0
    spread = mod.classify(text + " 加我vx abc12345", ctx)
    assert any(r["rule"] == "signal.duplicate_across_groups" for r in spread.reasons)


def test_pack_errors_name_lines() -> None:
    text = "category contact 联系\n  term 2.5 加微信\n  term abc 私聊\nregex 1.0 (unclosed\nbogus line\n"
    with pytest.raises(RulePackError) as info:
        parse_pack(text, source="community")
    lines = [e.line for e in info.value.errors]
    assert lines == [3, 4, 5]
    assert "第 3 行" in str(info.value)


def test_pack_errors_for_domain_signal_threshold_and_orphan_rule() -> None:
    text = "term 1.0 孤儿规则\ncategory x 测试\ndomain 1.0 not a domain\nsignal nope 1\nthreshold ad 2\n"
    with pytest.raises(RulePackError) as info:
        parse_pack(text)
    assert [e.line for e in info.value.errors] == [1, 3, 4, 5]


def test_community_pack_allows_own_domain_and_adds_words() -> None:
    base = Moderator(compile_pack(""))
    text = "新品上架 https://bit.ly/our-shop 欢迎看看"
    assert any(r["rule"] == "phishing.domain.bit.ly" for r in base.classify(text).reasons)
    own = Moderator(compile_pack("allow domain bit.ly\ncategory selling 推销\n  term 3.0 团长价\n"))
    assert not any(r["rule"] == "phishing.domain.bit.ly" for r in own.classify(text).reasons)
    assert any(r["rule"] == "selling.term.团长价" for r in own.classify("团长价 99 元").reasons)


def test_a_link_cannot_be_a_term() -> None:
    # "term 2.0 t.me" normalised to the link placeholder and so matched every link in every message
    for bad in ("t.me", "https://example.com/x", "admin@example.com", "@小王"):
        with pytest.raises(RulePackError) as info:
            parse_pack(f"category x 测试\n  term 2.0 {bad}\n")
        assert [e.line for e in info.value.errors] == [2]


def test_an_on_topic_link_gets_no_rule_hit_from_the_default_pack() -> None:
    pack = compile_pack("")
    for text in ("会议链接 https://meeting.tencent.com/dm/abc123 周四八点",
                 "Photos from last trip: https://www.youtube.com/watch?v=abc"):
        assert pack.match(normalise(text)) == []
    assert [h.rule_id for h in pack.match(normalise("新群 https://t.me/abcdef"))] == [
        "poaching.term.新群", "poaching.domain.t.me"]


def test_domain_rules_for_a_top_level_domain() -> None:
    pack = compile_pack("category link 链接\n  domain 1.5 *.xyz\nallow domain our-club.xyz\n")
    assert [h.rule_id for h in pack.match(normalise("看这里 https://a.b.some-site.xyz/p"))] == ["link.domain.xyz"]
    assert pack.match(normalise("看这里 https://our-club.xyz/p")) == []
    assert pack.match(normalise("看这里 https://xyz.example.com/p")) == []
    with pytest.raises(RulePackError):
        parse_pack("category link 链接\n  domain 1.5 *.\n")


def test_allow_term_masks_rule_inside_it() -> None:
    pack = compile_pack("")
    hits = [h.rule_id for h in pack.match(normalise("大家在群里投票选地点"))]
    assert not any(h.startswith("bargain.") for h in hits)


def test_naive_bayes_learns_and_round_trips() -> None:
    nb = NaiveBayes().fit([("今天一起跑步", False), ("周末去露营", False), ("刷单日结加微信", True),
                           ("兼职刷单佣金", True)])
    assert nb.logit("刷单佣金日结") > 0 > nb.logit("一起去露营跑步")
    again = NaiveBayes.from_json(nb.to_json())
    assert again.logit("刷单佣金日结") == pytest.approx(nb.logit("刷单佣金日结"))
    merged = nb.merged([("露营装备团购", True)], weight=5)
    assert merged.logit("露营装备团购") > nb.logit("露营装备团购")


def test_external_checker_can_only_veto() -> None:
    calls: list[str] = []

    def veto(text: str, verdict: object) -> bool:
        calls.append(text)
        return False

    set_external_checker(veto)
    try:
        m = Moderator(external=external_checker())
        assert m.classify("帮我砍一刀吧 https://p.pinduoduo.com/x").verdict == "review"
        assert m.classify("今天天气不错").verdict == "ok"
        assert len(calls) == 1  # only ads are sent to the checker
    finally:
        set_external_checker(None)


def test_named_regex_rules_and_overlapping_regex_hits() -> None:
    pack = compile_pack("category x 测试\n  regex 2.0 @shop_code 店铺码\\d{4}\n")
    assert [h.rule_id for h in pack.match(normalise("店铺码1234"))] == ["x.regex.shop_code"]
    hits = [h.rule_id for h in compile_pack("").match(normalise("加我微信 abc12345"))]
    assert "contact.regex.add_me" in hits and "contact.regex.contact_id" in hits
    with pytest.raises(RulePackError) as info:
        parse_pack("category x 测试\n  regex 1.0 @Bad-Name abc\n")
    assert info.value.errors[0].line == 2


def test_content_cache_gives_same_verdicts_without_sharing_state() -> None:
    cached, plain = Moderator(), Moderator(cache_size=0)
    text = "兼职刷单，日结300，加我薇信 vip_8888"
    first = cached.classify(text, MessageContext(member_joined_days=0.1, message_index=0))
    first.reasons.append({"rule": "mutated"})
    second = cached.classify(text, MessageContext(member_joined_days=90, message_index=500))
    reference = plain.classify(text, MessageContext(member_joined_days=90, message_index=500))
    assert second.as_json() == reference.as_json()
    assert all(r["rule"] != "mutated" for r in second.reasons)
    # behaviour is still per message (the scores of so plain an ad both sit at the sigmoid's clip, so the
    # reasons say it: the newcomer's first message, the trusted member's standing)
    assert second.score <= first.score
    assert any(r["rule"] == "signal.first_message" for r in first.reasons)
    assert any(r["rule"] == "signal.trusted_member" for r in second.reasons)
    assert not any(r["rule"] == "signal.first_message" for r in second.reasons)


def test_inline_comments_except_on_regex_lines() -> None:
    pack = parse_pack("category x 测试  # 注释\n  term 2.0 团长价   # 我们的黑话\n  regex 1.0 a#b\n"
                      "allow domain ok.example # 自己的站\n")
    assert [r.pattern for r in pack.rules] == ["团长价", "a#b"]
    assert pack.allow_domains == ["ok.example"]
    assert pack.categories["x"] == "测试"


def test_flagged_message_with_only_counter_terms_is_not_filed_as_counter() -> None:
    """Counter-evidence lowers suspicion; it is never the category a flagged message is filed under.
    Here behaviour (flood, the same text in another group, a phone number) carries the score while the
    only rule hit is a counter-term: the category is suspected_ad, as when no rule hit at all."""
    mod = Moderator(use_classifier=False, cache_size=0)
    ctx = MessageContext(messages_last_minute=10, same_text_other_groups=2)
    v = mod.classify("到了打我 13588886666", ctx)
    assert v.verdict in ("ad", "review")
    assert [r["category"] for r in v.reasons if r.get("category")] == ["counter"]
    assert v.category == "suspected_ad"
    # with a real category next to the counter-term, the real one is the category
    v = mod.classify("到了打我 13588886666 加微信", ctx)
    assert v.verdict == "ad" and v.category == "contact"
    # an unflagged message has no category
    assert mod.classify("到了打我").category is None


def test_combine_adds_its_weight_once_when_both_sides_have_evidence() -> None:
    pack = compile_pack(
        "category contact c\n  term 1.0 私我\ncategory benefit b\n  term 0.5 返现\n  term 0.5 红包\n"
        "category job j\n  term 0.5 日结\n"
        "combine 1.5 @offer contact benefit,job\n",
        base="",
    )
    mod = Moderator(pack, use_classifier=False, cache_size=0)

    def combos(text: str) -> list[dict]:
        return [r for r in mod.classify(text).reasons if ".combine." in r["rule"]]

    assert combos("私我") == [] and combos("返现红包") == []
    both = combos("返现红包日结, 私我")  # two partners: still added once
    assert [(r["rule"], r["weight"], r["category"]) for r in both] == [("contact.combine.offer", 1.5, "contact")]
    alone, paired = mod.classify("私我"), mod.classify("私我 返现")
    assert paired.score > alone.score
    # counter-evidence (a member warning about such offers) switches the combination off
    warn = compile_pack(
        "category contact c\n  term 1.0 私我\ncategory benefit b\n  term 0.5 返现\n"
        "category counter x\n  term -1.0 别信\ncombine 1.5 @offer contact benefit\n",
        base="",
    )
    reasons = Moderator(warn, use_classifier=False, cache_size=0).classify("私我 返现, 别信").reasons
    assert not [r for r in reasons if ".combine." in r["rule"]]
    # the combination never changes the category, which stays the strongest rule category
    assert mod.classify("私我 返现").category in (None, "contact")


def test_combine_lines_are_validated_and_a_later_line_reweights() -> None:
    for bad in ("combine 1.0 contact", "combine x contact job", "combine 1.0 contact contact",
                "combine 1.0 Contact job", "combine 1.0 @Bad contact job", "combine 11 contact job"):
        with pytest.raises(RulePackError) as err:
            parse_pack(bad)
        assert err.value.errors[0].line == 1
    pack = parse_pack("combine 1.0 @x contact job\ncombine 2.0 @x contact job,loan\ncombine 0.5 contact loan")
    assert [(c.id, c.weight, c.partners) for c in pack.combos] == [
        ("contact.combine.x", 2.0, ("job", "loan")), ("contact.combine.loan", 0.5, ("loan",))]


def test_emoji_only_and_unknown_text_carry_no_classifier_evidence(mod: Moderator) -> None:
    """Issue 16: a message of nothing but emoji used to score 0.88 (ad) from the classifier alone."""
    for text in ["😂😂😂", "🌹🌹🌹", "💰💰💰", "🎉🎉🎉🎉🎉", "🙏🙏🙏🙏", "👍", "ᚠᚢᚦ"]:
        v = mod.classify(text)
        assert v.verdict == "ok", text
        assert next(r["weight"] for r in v.reasons if r["rule"] == "classifier") == 0


@pytest.mark.parametrize("text", ["🎰🎰", "🧧🧧🧧", "📲", "➕➕", "666", "888", "+1", "12345678", "2026", "ㅋㅋㅋㅋ",
                                  "𓀀𓀁", "🇨🇳🇨🇳", "✈️", "🉐🈶", "㊙️", "١٢٣"])
def test_emoji_numbers_and_unseen_scripts_stay_ok_even_from_a_newcomer(mod: Moderator, text: str) -> None:
    """Round 2 of issue 16: emoji with a money or gambling look, bare numbers and scripts the corpus never
    saw carry no content evidence; a new member's first message with no invite adds only behaviour."""
    new = MessageContext(message_index=0, member_joined_days=0.1, joined_without_invite=True)
    for ctx in (None, new):
        v = mod.classify(text, ctx)
        assert v.verdict == "ok", (text, ctx)
        assert next(r["weight"] for r in v.reasons if r["rule"] == "classifier") == 0
        assert not any(r.get("category") for r in v.reasons), text


@pytest.mark.parametrize(("text", "canonical"), [
    ("jia wo wei xin 详细聊", "加我 微信"), ("佳我威心", "加我微信"), ("add me on w h a t s a p p", "wa"),
    ("加 v 🌸 x 8 8 8", "vx888"), ("hit me up on t.e.l.e.g.r.a.m", "tg"),
    ("联系我卫星：x i a o 1 2 3", "微信:xiao123"), ("加卫星", "加微信"),
    ("感兴趣的加我薇：ｌｕｃｋｙ", "加我微信:lucky"),
    ("add me on w3chat", "微信"), ("wh4tsapp me", "wa"), ("contact me on t dot me slash fastcash", "tg: fastcash"),
    ("加我绿泡泡", "加我微信"),
])
def test_obfuscated_contact_words_are_folded(text: str, canonical: str) -> None:
    assert canonical in normalise(text).text


def test_a_number_spelled_out_in_english_words_is_folded_and_counts_as_a_handle(mod: Moderator) -> None:
    n = normalise("Text me at five five five, one two three, four five six seven")
    assert "5551234567" in n.text and "spelled_number" in n.flags and "5551234567" in n.digit_runs
    reasons = mod.classify("wa me on plus one five five five oh one two").reasons
    assert any(r["rule"] == "signal.contact_handle" for r in reasons)
    for text in ["one or two of us, maybe three", "I'll be there at five, one of the kids is sick", "one two three go"]:
        assert "spelled_number" not in normalise(text).flags, text


def test_an_email_spelled_out_in_words_is_an_email(mod: Moderator) -> None:
    """Round 5: "name at gmail dot com" and its bracketed forms are written back as an address, so the
    e-mail signal sees them; "at" and "dot" in ordinary sentences are left alone."""
    for text, address in [("email me at kitty22 at gmail dot com", "kitty22@gmail.com"),
                          ("write to jo.smith (at) proton (dot) me", "jo.smith@proton.me"),
                          ("dm or mail bigwin[at]yahoo[dot]com", "bigwin@yahoo.com")]:
        n = normalise(text)
        assert n.emails == (address,) or list(n.emails) == [address], text
        assert "spelled_email" in n.flags
        assert any(r["rule"] == "signal.email" for r in mod.classify(text).reasons)
    for text in ["meet at the park at 5, the dot on the map", "we met at gmail's office dot com era jokes",
                 "I'm at home, dot the i's please"]:
        n = normalise(text)
        assert not n.emails and "spelled_email" not in n.flags, text


def test_an_at_sign_inside_a_word_reads_as_a() -> None:
    assert "snap:" in normalise("sn@p: kitty22").text
    assert "casino" in normalise("best c@sino in town").text
    # e-mails and mentions are not words with an @ inside
    assert normalise("mail a.b@example.com").emails
    assert normalise("thanks @tom").mentions == 1
    assert normalise("thanks@tom, see the link@alice").mentions == 2


def test_contact_handle_signal(mod: Moderator) -> None:
    for text in ["微信号：m 8 8 6 6 9", "扣扣：三二五六七八九一零", "加 v 🌸 x y z 8 8 8 领取资料", "snap: mary992",
                 "细聊 v：ｍｍ_２０２６", "联系我卫星：x i a o 1 2 3",
                 # round 3: the id split in words after a colon, a bare q:, "tg @ name", "snap me:", disc:
                 "需要的加 v：ｘｉａｏ ｌｉ ６６８", "详情 v❤：abc 9 9 9", "加 q：1 2 3 4 5 a b", "tg @ cheap_deals_88",
                 "snap me: k i k i _ 2 2", "disc: gamer#4821", "find me on tele: j o h n n y 7 7"]:
        assert any(r["rule"] == "signal.contact_handle" for r in mod.classify(text).reasons), text
    for text in ["我的微信就是手机号", "加了rtx4090显卡", "加油站95号", "卫星发射成功", "v8 engine",
                 "q: what time is practice 2 2day", "the ig post from 2019", "微信: 我8点到", "dc 2 nyc trip"]:
        assert not any(r["rule"] == "signal.contact_handle" for r in mod.classify(text).reasons), text


@pytest.mark.parametrize(("text", "folded"), [
    ("God bless, my telegram is g o l d _ a l e x", "tg is goldalex"),
    ("LINE: v i p . b k k", "line: vipbkk"),
    ("tg @ m a r k _ f x 8 8 (no spaces)", "tg @ markfx88"),
    ("daily picks, telegram: aviator . signals . pro", "tg: aviator.signals.pro"),
    ("message her on insta: catherine_ trades_ fx", "insta: catherine_trades_fx"),
    ("Contact me on T.G : Mentor _ Kelvin", "tg : mentor_kelvin"),
    ("ig: lina . wins . daily (remove dots n spaces)", "ig: lina.wins.daily"),
])
def test_an_id_spelled_out_after_a_contact_app_is_one_id_and_a_handle(mod: Moderator, text: str, folded: str) -> None:
    """Round 6: an id written letter by letter or word by word (blanks around its dots or underscores) right
    after a contact app is written back as one id, flag ``spelled_handle``, which counts as a contact handle
    as a spelled-out number does."""
    n = normalise(text)
    assert folded in n.text and "spelled_handle" in n.flags, n.text
    assert any(r["rule"] == "signal.contact_handle" for r in mod.classify(text).reasons), text


@pytest.mark.parametrize("text", ["my ig is dead. lol", "the line is long . see you", "follow the rules _ please",
                                  "tg is down again", "a b c d e f g", "my line: ok . thanks", "spell it: c a t",
                                  "w h a t s a p p is down"])
def test_blanks_and_single_letters_in_ordinary_chat_are_not_a_spelled_handle(text: str) -> None:
    assert "spelled_handle" not in normalise(text).flags, text


def test_an_app_and_its_number_spelled_out_in_one_run_stay_two_words() -> None:
    """Round 6: "w h a t s a p p 9 1 2 3 . 4 5 6 7" was joined into one token "whatsapp91234567", in which
    neither the variant table nor the handle detector saw the app."""
    assert "wa 91234567" in normalise("Aircon servicing $20. w h a t s a p p 9 1 2 3 . 4 5 6 7").text
    assert "vx888" in normalise("加 v x 8 8 8").text  # an id that only starts like an app stays whole


def test_contact_handle_after_a_messaging_app(mod: Moderator) -> None:
    """Round 6: after a messaging app, a phone number in any country's format (the phone signal knows mainland
    mobiles only), an @mention (lifted out as a mention before the handle detector reads the text) or an id of
    letters joined by dots or underscores is a contact handle; "line" and "signal" only with a colon."""
    for text in ["msg me on what's app 0 1 2 - 3 4 5 6 7 8 9", "viber: +44 7700 900123", "wa me 0812 345 678",
                 "line: 0812345678", "ask me on telegram @botwins_daily", "IG @grind.with.leo",
                 "tg: kyc_store", "my ig is lina.wins.daily", "signal: @mark_22"]:
        assert any(r["rule"] == "signal.contact_handle" for r in mod.classify(text).reasons), text
    for text in ["line 1234567 of the log", "call me on 0412 555 123 when you arrive", "I'm on line 2 of the form",
                 "can someone tag me on ig? @tom", "signal is weak here, 1234567 steps to the window",
                 "the line is mr.smith's fault", "the ig post from 2019", "my ig is dead. lol"]:
        assert not any(r["rule"] == "signal.contact_handle" for r in mod.classify(text).reasons), text


def test_operators_campaign_text_is_not_an_ad_unless_a_new_member_posts_it() -> None:
    text = "拉五个好友进群，截图给我，送精美礼品一份，名额有限"
    moderator = Moderator(cached_pack(""), campaign_texts=[text, "收到"])
    regular = MessageContext(member_joined_days=40, message_index=30)
    stranger = MessageContext(member_joined_days=0.2, message_index=0)
    assert Moderator(cached_pack("")).classify(text, regular).verdict == "ad"
    relayed = moderator.classify(text, regular)
    assert relayed.verdict == "ok" and any(r["rule"] == "signal.campaign_text" for r in relayed.reasons)
    assert moderator.classify(text, stranger).verdict == "ad"
    assert moderator.classify(text + " 加我vx abc12345", regular).verdict == "ad"  # only word for word


def test_logistic_model_round_trips_and_tenant_decisions_shift_it() -> None:
    rows = [(t, spam, t) for t, spam in [("今天一起跑步", False), ("一起去露营", False), ("周末露营跑步", False),
                                          ("刷单日结加微信", True), ("兼职刷单佣金", True), ("日结兼职在家做", True)]]
    model = train_logistic(rows, calibrate=False)
    assert model.lr is not None and model.logit("刷单佣金日结") > 0 > model.logit("一起去露营跑步")
    again = NaiveBayes.from_json(model.to_json())
    assert again.logit("刷单佣金日结") == pytest.approx(model.logit("刷单佣金日结"))
    tenant = model.merged([("露营装备团购", True)], weight=5)
    assert tenant.logit("露营装备团购") > model.logit("露营装备团购")
    assert NaiveBayes.from_json(tenant.to_json()).logit("露营装备团购") == pytest.approx(tenant.logit("露营装备团购"))


@pytest.mark.parametrize("text", ["周六早上八点集合，别迟到", "👍👍", "注册送彩金，首充翻倍"])
def test_joined_without_invite_is_a_weak_signal_for_new_members_only(text: str) -> None:
    mod = Moderator(cache_size=0)
    invited = mod.classify(text, MessageContext(member_joined_days=0.2, message_index=0))
    uninvited = mod.classify(text, MessageContext(member_joined_days=0.2, message_index=0, joined_without_invite=True))
    rules = [r["rule"] for r in uninvited.reasons]
    assert "signal.no_invite" in rules and "signal.no_invite" not in [r["rule"] for r in invited.reasons]
    assert uninvited.score >= invited.score and (uninvited.score > invited.score or invited.score > 0.999)
    # weak: it never turns a message with no ad evidence into an ad or a review
    if text != "注册送彩金，首充翻倍":
        assert uninvited.verdict == "ok"
    # an old hand who once joined by QR code carries nothing from it
    veteran = mod.classify(text, MessageContext(member_joined_days=60, message_index=200, joined_without_invite=True))
    assert "signal.no_invite" not in [r["rule"] for r in veteran.reasons]


_SMALL = [(t, spam, t) for t, spam in [
    ("今天一起跑步", False), ("一起去露营", False), ("周末露营跑步", False), ("明天早上集合", False),
    ("刷单日结加微信", True), ("兼职刷单佣金", True), ("日结兼职在家做", True), ("加微信领佣金", True)]]


def _assert_runtime_is_sklearn(model: Any, rows: list[tuple[str, bool, str]], texts: tuple[str, ...]) -> None:
    """The exported model's runtime log-odds equal scikit-learn's decision function of the same fit
    (uncalibrated, ``min_df=1``) on ``texts``."""
    from shequn.moderation import train  # noqa: PLC0415 - callers importorskip scikit-learn first

    index, _counts = train._vocabulary(rows, [train.candidate_features(x) for x, _s, _t in rows], 1)
    clf = train._fit(train._matrix([train.candidate_features(x) for x, _s, _t in rows], index),
                     [int(s) for _x, s, _t in rows], [1.0] * len(rows), train.SK_C)
    for text in texts:
        expected = float(clf.decision_function(train._matrix([train.candidate_features(text)], index))[0])
        assert model.logit(text) == pytest.approx(expected, abs=1e-3), text


def test_sklearn_weights_mean_at_runtime_what_they_meant_in_training() -> None:
    """Round 4: the regression is fitted by scikit-learn at build time and scored in pure Python from the
    exported weights; without calibration the runtime log-odds are scikit-learn's decision function."""
    pytest.importorskip("sklearn")
    from shequn.moderation import train  # noqa: PLC0415 - after the importorskip: scikit-learn is a dev extra

    model = train.train_sklearn(_SMALL, calibrate=False, min_df=1)
    assert model.lr is not None and model.lr["ngrams"] == [1, 2, 3]
    assert model.lr["subword"] == list(train.SK_SUBWORD)
    _assert_runtime_is_sklearn(model, _SMALL, ("刷单佣金日结", "一起去露营跑步", "周末加微信"))
    assert model.logit("刷单佣金日结") > 0 > model.logit("一起去露营跑步")
    # unseen characters, emoji, and a single known character alone carry no evidence
    assert model.logit("ᚠᚢᚦ") == model.logit("👍👍") == model.logit("刷") == 0.0


_SMALL_EN = [(t, spam, t) for t, spam in [
    ("running club meets at the park", False), ("see you all at the meetup", False),
    ("great run this morning everyone", False), ("who is coming to the picnic", False),
    ("casino bonus for new players", True), ("free casino spins tonight", True),
    ("bonus spins on signup", True), ("claim your welcome bonus", True)]]


def test_english_words_are_read_inside_too() -> None:
    """Round 5: the regression knows the letter runs (3-5) inside English words, so a form never seen
    whole ("casinos", "bonuses") carries the evidence of the word it contains — at run time as in
    training (the Aho-Corasick pass finds exactly the runs ``lr_features`` lists); blanks and
    punctuation never join two words into one run."""
    pytest.importorskip("sklearn")
    from shequn.moderation import train  # noqa: PLC0415 - after the importorskip: scikit-learn is a dev extra

    feats = lr_features("free casinos, big-bonus", (1, 2, 3), (3, 4, 5))
    assert {"cas", "casi", "casin", "bonus", "\x01casinos"} <= feats
    assert not any(" " in f or "," in f or "-" in f for f in feats)
    assert "ee c" not in feats and "s b" not in feats
    assert lr_features("free casinos", (1, 2, 3)) == {"\x01free", "\x01casinos"}  # no sizes, no runs
    model = train.train_sklearn(_SMALL_EN, calibrate=False, min_df=1)
    assert model.logit("casinos and bonuses") > 0 > model.logit("the runners picnic")
    _assert_runtime_is_sklearn(model, _SMALL_EN, ("casinos and bonuses", "the runners picnic", "bonus"))


_SMALL_PAIRS = [(t, spam, t) for t, spam in [
    ("dm me after the match", False), ("see you at the match", False), ("link in the group chat", False),
    ("my bio is out of date", False), ("dm me for the price", True), ("link in bio for prices", True),
    ("prices in my bio, dm me", True), ("cheap prices, link in bio", True)]]


def test_english_word_pairs_are_features_at_runtime_as_in_training() -> None:
    """Round 6: the regression also knows pairs of consecutive English words ("dm me", "in bio"), looked up
    at run time as the words are; a pair never takes a blank-free word's place."""
    pytest.importorskip("sklearn")
    from shequn.moderation import train  # noqa: PLC0415 - after the importorskip: scikit-learn is a dev extra

    feats = lr_features("dm me, link in bio", (1, 2, 3), (), pairs=True)
    assert {"\x01dm me", "\x01me link", "\x01link in", "\x01in bio", "\x01link"} <= feats
    assert "\x01dm me" not in lr_features("dm me, link in bio", (1, 2, 3))
    assert train.SK_PAIRS and train.candidate_features("dm me now") >= {"\x01dm me", "\x01me now"}
    model = train.train_sklearn(_SMALL_PAIRS, calibrate=False, min_df=1)
    assert model.lr is not None and model.lr["pairs"] is True
    assert model.lr["w"]["\x01in bio"] > 0
    _assert_runtime_is_sklearn(model, _SMALL_PAIRS, ("dm me, link in bio", "see you in the chat", "bio dm me"))
    again = NaiveBayes.from_json(model.to_json())
    assert again.logit("link in bio") == pytest.approx(model.logit("link in bio"))


_BILINGUAL = [
    *((t, False, f"ham_zh.txt:{i}") for i, t in enumerate(
        ["今天一起跑步", "一起去露营", "周末露营跑步", "明天早上集合", "谢谢老师", "跑步打卡", "露营照片发群里"])),
    *((t, True, f"ad_zh.txt:{i}") for i, t in enumerate(
        ["刷单日结加微信", "兼职刷单佣金", "日结兼职在家做", "加微信领佣金", "刷单返佣金", "在家兼职日结"])),
    *((t, False, f"ham_en.txt:{i}") for i, t in enumerate(
        ["great run this morning", "see you at the picnic", "who is coming to the run 哈哈", "thanks coach",
         "picnic photos in the album", "running club at the park"])),
    *((t, True, f"ad_en.txt:{i}") for i, t in enumerate(
        ["casino bonus for new players", "free casino spins", "claim your casino bonus", "bonus spins tonight",
         "earn daily from home", "casino cashback daily"])),
]


def test_the_count_model_is_calibrated_for_each_language_apart() -> None:
    """Round 6: the naive-Bayes half has one calibration for text with a CJK character and one for text
    without (``platt`` / ``platt_en``), each fitted on its own language's rows (the seed file names it: an
    English seed the builder wrote 哈哈 after stays English). With one joint calibration, English ads the count
    model found hard raised the shift for every text, and 「谢谢老师解答 🙏」 went to review."""
    model = train_naive_bayes(_BILINGUAL)
    assert model.platt is not None and model.platt_en is not None and model.platt != model.platt_en
    raw = replace(model, platt=None, platt_en=None, _weights=None)
    for text, (a, b) in (("周末一起跑步", model.platt), ("casino run tonight", model.platt_en)):
        assert model._logit(text) == pytest.approx(max(-CLIP, min(CLIP, a * raw._logit(text) + b)))
    again = NaiveBayes.from_json(model.to_json())
    assert again.platt_en == model.platt_en and again._logit("casino run") == pytest.approx(model._logit("casino run"))
    assert model.merged([("露营装备团购", True)]).platt_en == model.platt_en
    assert not classifier._row_is_chinese("who is coming to the run 哈哈", "ham_en.txt:3")
    assert classifier._row_is_chinese("加微信", "tenant") and not classifier._row_is_chinese("dm me", "tenant")


def test_blend_round_trips_and_tenant_decisions_move_both_halves() -> None:
    """The shipped model is naive Bayes with the regression as its partner; a tenant's moderator decisions
    (``do_retrain_tenant_model`` → ``merged``) move both, and the tenant's model survives JSON."""
    pytest.importorskip("sklearn")
    from shequn.moderation import train  # noqa: PLC0415 - after the importorskip: scikit-learn is a dev extra

    model = train_naive_bayes(_SMALL, calibrate=False)
    model.partner = train.train_sklearn(_SMALL, calibrate=False, min_df=1)
    model.partner_weight = 0.5
    text = "露营装备团购"
    again = NaiveBayes.from_json(model.to_json())
    assert again.partner is not None and again.logit(text) == pytest.approx(model.logit(text))
    tenant = model.merged([(text, True)], weight=5).prune()
    assert tenant.partner is not None
    assert tenant._logit(text) > model._logit(text) and tenant.partner.logit(text) > model.partner.logit(text)
    assert tenant.logit(text) > model.logit(text)
    assert NaiveBayes.from_json(tenant.to_json()).logit(text) == pytest.approx(tenant.logit(text))
    # reversals pull the other way
    assert model.merged([(text, False)], weight=5).logit(text) < model.logit(text)


def test_the_shipped_model_is_the_blend() -> None:
    model = default_model()
    assert model.partner is not None and model.partner.lr is not None and 0 < model.partner_weight < 1
    assert model.partner.lr["ngrams"] == [1, 2, 3]
