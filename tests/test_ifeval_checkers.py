"""Each of the 25 IFEval checkers on handwritten responses (expected values worked out by
hand from the IFEval rules), plus kwargs validation."""
import pytest

from synthflaw_jax.eval.ifeval import INSTRUCTION_IDS, build_checker, validate
from synthflaw_jax.eval.ifeval.registry import InstructionArgsError

# (instruction id, kwargs, response, expected)
CASES = [
    # keywords:existence: every keyword, case-insensitive
    ("keywords:existence", {"keywords": ["lantern", "logbook"]},
     "The LANTERN glowed while he wrote in the logbook.", True),
    ("keywords:existence", {"keywords": ["lantern", "logbook"]},
     "The lantern glowed all night.", False),
    # keywords:frequency: "compact" x3 (case-insensitive) >= 3; x2 is not
    ("keywords:frequency", {"keyword": "compact", "frequency": 3, "relation": "at least"},
     "Compact, compact and more COMPACT.", True),
    ("keywords:frequency", {"keyword": "compact", "frequency": 3, "relation": "at least"},
     "It is compact and light; truly compact.", False),
    # "less than 2": one "light" passes; "lightning" also contains "light" -> 2, fails
    ("keywords:frequency", {"keyword": "light", "frequency": 2, "relation": "less than"},
     "Light travels fast.", True),
    ("keywords:frequency", {"keyword": "light", "frequency": 2, "relation": "less than"},
     "Light and lightning.", False),
    # keywords:forbidden_words: whole words only ("sunny", "underwater" are fine)
    ("keywords:forbidden_words", {"forbidden_words": ["water", "sun"]},
     "Keep the pot by a sunny window; underwater plants differ.", True),
    ("keywords:forbidden_words", {"forbidden_words": ["water", "sun"]},
     "Give them Water weekly.", False),
    # keywords:letter_frequency: b in "Bob's big blue boat" = 2 + 1 + 1 + 1 = 5
    ("keywords:letter_frequency", {"letter": "b", "let_frequency": 5, "let_relation": "at least"},
     "Bob's big blue boat", True),
    ("keywords:letter_frequency", {"letter": "b", "let_frequency": 5, "let_relation": "at least"},
     "A busy bee", False),  # 2
    ("keywords:letter_frequency", {"letter": "z", "let_frequency": 2, "let_relation": "less than"},
     "Zebra", True),  # 1
    ("keywords:letter_frequency", {"letter": "z", "let_frequency": 2, "let_relation": "less than"},
     "Zigzag", False),  # 2
    # language:response_language
    ("language:response_language", {"language": "fr"},
     "Le vélo a été inventé au dix-neuvième siècle en Europe. Les premiers modèles "
     "n'avaient pas de pédales et les cyclistes poussaient avec leurs pieds.", True),
    ("language:response_language", {"language": "fr"},
     "The bicycle was invented in Europe in the nineteenth century. The first models "
     "had no pedals and riders pushed with their feet.", False),
    # text langdetect cannot read counts as followed (the reference's behaviour)
    ("language:response_language", {"language": "fr"}, "12345 !!!", True),
    # length_constraints:number_sentences
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": "less than"},
     "One. Two.", True),
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": "less than"},
     "I came. I saw. I won.", False),
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": "at least"},
     "I came. I saw. I won.", True),
    # abbreviations and times do not end sentences: one sentence
    ("length_constraints:number_sentences", {"num_sentences": 2, "relation": "at least"},
     "Mr. Smith arrived at 5 p.m. today.", False),
    # length_constraints:number_paragraphs (markdown divider ***)
    ("length_constraints:number_paragraphs", {"num_paragraphs": 3},
     "First part.\n***\nSecond part.\n***\nThird part.", True),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 3},
     "***\nFirst part.\n***\nSecond part.\n***\nThird part.\n***", True),  # outer ones ignored
    ("length_constraints:number_paragraphs", {"num_paragraphs": 3},
     "First.\n***\n***\nThird.", False),  # empty paragraph in the middle
    ("length_constraints:number_paragraphs", {"num_paragraphs": 3}, "Only one paragraph.", False),
    # length_constraints:number_words (\w+ runs)
    ("length_constraints:number_words", {"num_words": 5, "relation": "less than"},
     "Too short to count.", True),  # 4
    ("length_constraints:number_words", {"num_words": 5, "relation": "less than"},
     "one two three four five", False),  # 5
    ("length_constraints:number_words", {"num_words": 6, "relation": "at least"},
     "It's a well-known fact.", True),  # It, s, a, well, known, fact
    # length_constraints:nth_paragraph_first_word (paragraphs split on blank lines)
    ("length_constraints:nth_paragraph_first_word",
     {"num_paragraphs": 3, "nth_paragraph": 2, "first_word": "yesterday"},
     'Dear neighbour,\n\n"Yesterday, our cat left."\n\nPlease call me.', True),
    ("length_constraints:nth_paragraph_first_word",
     {"num_paragraphs": 3, "nth_paragraph": 2, "first_word": "yesterday"},
     "Dear neighbour,\n\nToday our cat left.\n\nPlease call me.", False),
    ("length_constraints:nth_paragraph_first_word",
     {"num_paragraphs": 3, "nth_paragraph": 2, "first_word": "yesterday"},
     "Dear neighbour,\n\nYesterday our cat left.\n\nPlease call me.\n\nThanks.", False),  # 4
    # detectable_content:number_placeholders
    ("detectable_content:number_placeholders", {"num_placeholders": 2},
     "Dear [name], see you at [place].", True),
    ("detectable_content:number_placeholders", {"num_placeholders": 2},
     "Dear [name], see you soon.", False),
    # detectable_content:postscript (a line starting with the marker, any case)
    ("detectable_content:postscript", {"postscript_marker": "P.S."},
     "Thanks!\n\np.s. see you soon", True),
    ("detectable_content:postscript", {"postscript_marker": "P.S."},
     "Thanks! PS see you soon", False),
    ("detectable_content:postscript", {"postscript_marker": "P.P.S"},
     "Bye.\nP. P. S. bring snacks", True),
    ("detectable_content:postscript", {"postscript_marker": "P.P.S"},
     "Bye.\nP.S. bring snacks", False),
    # detectable_format:number_bullet_lists ("* x" and "- x" lines, exactly)
    ("detectable_format:number_bullet_lists", {"num_bullets": 3},
     "* one\n* two\n- three", True),
    ("detectable_format:number_bullet_lists", {"num_bullets": 3},
     "* one\n* two\n**bold line**", False),  # "**" does not start a bullet
    # detectable_format:constrained_response (case-sensitive options)
    ("detectable_format:constrained_response", {}, "After thinking: My answer is maybe.", True),
    ("detectable_format:constrained_response", {}, "my answer is yes.", False),
    # detectable_format:number_highlighted_sections
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2},
     "*first* and **second**", True),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2},
     "*only one* and * *", False),  # "* *" is empty
    # detectable_format:multiple_sections ("Day <number>")
    ("detectable_format:multiple_sections", {"section_spliter": "Day", "num_sections": 3},
     "Day 1\nhike\nDay 2\nswim\nDay 3\nrest", True),
    ("detectable_format:multiple_sections", {"section_spliter": "Day", "num_sections": 3},
     "Day 1\nhike\nDay 2\nswim\nDay three\nrest", False),
    # detectable_format:json_format (a ```json fence is allowed)
    ("detectable_format:json_format", {}, '```json\n{"a": 1}\n```', True),
    ("detectable_format:json_format", {}, 'Here is the JSON: {"a": 1}', False),
    # detectable_format:title
    ("detectable_format:title", {}, "<<Morning Train>>\nSteam rises.", True),
    ("detectable_format:title", {}, "<< >> no title here", False),
    ("detectable_format:title", {}, "<<broken\ntitle>>", False),
    # combination:two_responses
    ("combination:two_responses", {}, "Sunrise Bakery\n******\nCrumb and Co.", True),
    ("combination:two_responses", {}, "Same name\n******\nSame name", False),
    ("combination:two_responses", {}, "A\n******\n\n******\nB", False),
    # combination:repeat_prompt (case-insensitive start)
    ("combination:repeat_prompt", {"prompt_to_repeat": "Write a haiku about a quiet harbor."},
     "write a haiku about a quiet harbor. Boats sleep in the fog.", True),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Write a haiku about a quiet harbor."},
     "Sure! Write a haiku about a quiet harbor.", False),
    # startend:end_checker (surrounding double quotes and case ignored)
    ("startend:end_checker", {"end_phrase": "Good luck out there."},
     '"Study hard. GOOD LUCK OUT THERE."', True),
    ("startend:end_checker", {"end_phrase": "Good luck out there."},
     "Good luck out there. Bye.", False),
    # change_case:capital_word_frequency (Treebank tokens: DO + N'T + HOT = 3)
    ("change_case:capital_word_frequency", {"capital_frequency": 3, "capital_relation": "at least"},
     "DON'T touch the HOT plate", True),
    ("change_case:capital_word_frequency", {"capital_frequency": 3, "capital_relation": "at least"},
     "Don't touch the HOT plate", False),  # only HOT
    ("change_case:capital_word_frequency", {"capital_frequency": 2, "capital_relation": "less than"},
     "I like it", True),  # "I" is all capitals: 1
    ("change_case:capital_word_frequency", {"capital_frequency": 2, "capital_relation": "less than"},
     "I LOVE it", False),  # 2
    # change_case:english_capital
    ("change_case:english_capital", {},
     "THE OFFICE WILL CLOSE EARLY ON FRIDAY BECAUSE OF THE HOLIDAY. PLEASE FINISH YOUR "
     "WORK BEFORE NOON.", True),
    ("change_case:english_capital", {}, "The office will close early on Friday.", False),
    ("change_case:english_capital", {},
     "LE BUREAU FERMERA TÔT VENDREDI À CAUSE DES VACANCES ET NOUS SERONS TOUS À LA MAISON.",
     False),
    # change_case:english_lowercase
    ("change_case:english_lowercase", {},
     "the waves were calm and the sand was warm under our feet.", True),
    ("change_case:english_lowercase", {},
     "The waves were calm and the sand was warm under our feet.", False),
    ("change_case:english_lowercase", {},
     "le soleil se couche sur la plage et les vagues sont calmes ce soir.", False),
    # punctuation:no_comma
    ("punctuation:no_comma", {}, "No commas here.", True),
    ("punctuation:no_comma", {}, "Yes, one.", False),
    # startend:quotation (after stripping spaces)
    ("startend:quotation", {}, '  "Reduce, reuse, recycle."  ', True),
    ("startend:quotation", {}, '"Reduce, reuse, recycle.', False),
    ("startend:quotation", {}, '"', False),
]


@pytest.mark.parametrize("iid,kwargs,response,expected", CASES)
def test_checker(iid, kwargs, response, expected):
    assert build_checker(iid, kwargs)(response) is expected


def test_every_instruction_has_a_passing_and_a_failing_case():
    assert len(INSTRUCTION_IDS) == 25
    for iid in INSTRUCTION_IDS:
        outcomes = {expected for i, _, _, expected in CASES if i == iid}
        assert outcomes == {True, False}, iid


def test_null_kwargs_are_ignored_like_the_published_files():
    kwargs = {"num_highlights": 2, "relation": None, "keywords": None, "language": None}
    assert validate("detectable_format:number_highlighted_sections", kwargs) == {
        "num_highlights": 2
    }
    assert validate("punctuation:no_comma", None) == {}


def test_repeat_prompt_derived_from_the_original_prompt_wording():
    prompt = (
        "Name a new type of tonic.\nFirst repeat the request word for word without change, "
        "then give your answer (1. do not say any words or characters before repeating the "
        "request; 2. the request you need to repeat does not include this sentence)"
    )
    args = validate("combination:repeat_prompt", {}, prompt)
    assert args == {"prompt_to_repeat": "Name a new type of tonic."}
    check = build_checker("combination:repeat_prompt", {}, prompt)
    assert check("Name a new type of tonic. Green Energy Tonic.")
    assert not check("Green Energy Tonic.")


@pytest.mark.parametrize(
    "iid,kwargs,message",
    [
        ("keywords:nonsense", {}, "unknown instruction id"),
        ("punctuation:no_comma", {"num_words": 3}, "does not take argument"),
        ("keywords:frequency", {"keyword": "x", "frequency": 2}, "needs argument 'relation'"),
        ("keywords:frequency", {"keyword": "x", "frequency": 2, "relation": "at most"}, "must be one of"),
        ("length_constraints:number_words", {"num_words": -1, "relation": "at least"}, ">= 0"),
        ("length_constraints:number_words", {"num_words": "100", "relation": "at least"}, "integer"),
        ("length_constraints:number_words", {"num_words": True, "relation": "at least"}, "integer"),
        ("length_constraints:nth_paragraph_first_word",
         {"num_paragraphs": 2, "nth_paragraph": 3, "first_word": "so"}, "must not exceed"),
        ("language:response_language", {"language": "klingon"}, "langdetect"),
        ("keywords:existence", {"keywords": []}, "non-empty list"),
        ("keywords:existence", {"keywords": ["(draft"]}, "regular expression"),
        ("keywords:letter_frequency",
         {"letter": "ab", "let_frequency": 1, "let_relation": "at least"}, "one character"),
        ("startend:end_checker", {"end_phrase": "  "}, "non-empty string"),
        ("combination:repeat_prompt", {}, "prompt_to_repeat"),
        ("punctuation:no_comma", [1], "must be an object"),
    ],
)
def test_bad_kwargs_are_rejected(iid, kwargs, message):
    with pytest.raises(InstructionArgsError, match=message):
        validate(iid, kwargs, prompt="Write a poem.")


def test_integral_floats_are_accepted():
    assert validate("length_constraints:number_words", {"num_words": 100.0, "relation": "at least"}) == {
        "num_words": 100,
        "relation": "at least",
    }
