"""A generic corpus of image descriptions for TEXTSPAN, written for this project, and concept seeds.

The corpus is built deterministically from hand-written word lists and sentence patterns so that it
covers the 12 concepts of the paper (and more phrasing variety than one template per concept); it is
not tied to any downstream data set. ``CONCEPT_SEEDS`` are a few phrases per concept, used only to
*name* the clusters that HDBSCAN finds (nearest seed centroid), never to assign texts directly.
"""
from __future__ import annotations

import itertools
import random

COLORS = ["red", "blue", "green", "yellow", "orange", "purple", "pink", "brown", "black", "white", "gray",
          "golden", "silver", "turquoise", "crimson", "teal", "beige", "maroon", "navy blue", "lime green",
          "charcoal gray", "pastel", "neon", "earthy", "monochrome", "sepia"]
COLOR_PATTERNS = ["Image with a {} color", "A photo dominated by {} tones", "Something painted {}",
                  "An image with warm {} hues", "A {} color palette", "Picture with bright {} accents",
                  "A {} colored background"]
SHAPES = ["circle", "square", "triangle", "rectangle", "hexagon", "octagon", "pentagon", "star", "spiral",
          "cube", "sphere", "cylinder", "cone", "crescent", "diamond shape", "oval", "zigzag line", "arrow",
          "heart shape", "cross", "ring", "pyramid", "scalene triangle", "irregular polygon"]
SHAPE_PATTERNS = ["A {}", "An image of a {}", "A drawing of a regular {}", "Geometric {} outline",
                  "A large {} in the middle", "Several small {}s", "A {} made of lines"]
TEXTURES = ["furry", "wooden", "marbled", "woven", "knitted", "rusty", "glossy", "rough", "smooth", "scaly",
            "striped", "dotted", "checkered", "bumpy", "cracked", "velvet", "leather", "metallic", "sandy",
            "grainy", "fibrous", "wrinkled", "honeycomb", "lace", "embroidered", "porous"]
TEXTURE_PATTERNS = ["Close-up of a {} texture", "A {} surface", "Detailed {} pattern", "Macro photo of {} material",
                    "A fabric with a {} weave", "Texture of {} stone"]
OBJECTS = ["laptop", "cup", "bottle", "chair", "lamp", "phone", "book", "clock", "bicycle", "car", "umbrella",
           "backpack", "shoe", "jacket", "necklace", "fork", "bowl", "guitar", "hammer", "kettle", "camera",
           "pillow", "key", "belt", "sock", "bag", "vase", "candle", "spoon", "helmet", "scissors", "pencil"]
OBJECT_PATTERNS = ["A {}", "A photo of a {}", "A single {} on a table", "A close-up of a {}", "An old {}",
                   "A {} in a store"]
LOCATIONS = ["Tokyo", "Paris", "a city park", "a desert", "the Alaskan mountains", "a beach", "a forest",
             "a busy airport", "a subway station", "a farm", "a snowy village", "a harbor", "a canyon",
             "Barcelona", "a rainforest", "a mountain lake", "a market square", "a countryside road",
             "an art gallery", "a cozy cafe", "the Greek islands", "a suburban street", "a coral reef",
             "a stadium", "a library", "a train station", "the Scottish highlands", "an urban alley"]
LOCATION_PATTERNS = ["Photo taken in {}", "Picture snapped in {}", "A view of {}", "An image of {} at night",
                     "Aerial view of {}", "A landscape of {}"]
ANIMALS = ["dog", "cat", "horse", "bird", "butterfly", "fish", "owl", "snake", "lizard", "elephant", "zebra",
           "tiger", "rabbit", "turtle", "seagull", "bear", "frog", "deer", "monkey", "parrot"]
ANIMAL_PATTERNS = ["An image with a {}", "A playful {}", "A wild {} in nature", "A photo of a young {}",
                   "Several {}s together"]
HUMANS = ["woman", "man", "child", "toddler", "group of friends", "family", "crowd", "team", "couple",
          "old man", "young woman", "chef", "doctor", "student", "dancer", "soldier"]
HUMAN_PATTERNS = ["A photo of a {}", "Portrait of a {}", "An image of a smiling {}", "A {} standing outside",
                  "A candid shot of a {}"]
LETTERS = list("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
TEXT_PATTERNS = ["A photo with the letter {}", "A sign with the letter {}", "Bold typography of the letter {}",
                 "Graffiti spelling {}"]
TEXT_EXTRA = ["A page of handwritten text", "A street sign with words", "A newspaper headline",
              "Neon lettering on a wall", "Morse code typography", "A poster with large text",
              "Calligraphy on paper", "A book cover title", "Subtitles on a screen", "A label with printed words"]
NUMBERS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
           "fifteen", "twenty", "fifty", "hundred"]
NUMBER_PATTERNS = ["An image of the number {}", "The number {}", "A sign showing {}", "A digit meaning {}"]
STYLES = ["anime", "cubist", "impressionist", "minimalist", "surreal", "retro", "pop art", "watercolor",
          "pencil sketch", "oil painting", "pixel art", "art deco", "baroque", "cinematic", "film noir",
          "vaporwave", "abstract", "ukiyo-e", "gothic", "photorealistic"]
STYLE_PATTERNS = ["{} style image", "Artwork in {} style", "A {} composition", "A {} rendering",
                  "An illustration with {} aesthetics"]
EMOTIONS = ["joyful", "sad", "angry", "surprised", "fearful", "calm", "intrigued", "sarcastic", "bored",
            "excited", "confused", "nostalgic", "proud", "anxious"]
EMOTION_PATTERNS = ["A {} facial expression", "Someone looking {}", "A {} mood", "A {} face in close-up"]
ACTIONS = ["running", "jumping", "swimming", "dancing", "cooking", "reading", "climbing", "riding a bike",
           "playing guitar", "hugging", "painting", "throwing a ball", "skiing", "surfing", "walking a dog",
           "typing", "singing", "lifting weights"]
ACTION_PATTERNS = ["A person {}", "People {} together", "A child {}", "An athlete {}", "Someone {} outdoors"]

CONCEPT_WORDS = {
    "color": (COLORS, COLOR_PATTERNS), "shape": (SHAPES, SHAPE_PATTERNS), "texture": (TEXTURES, TEXTURE_PATTERNS),
    "object": (OBJECTS, OBJECT_PATTERNS), "location": (LOCATIONS, LOCATION_PATTERNS),
    "animal": (ANIMALS, ANIMAL_PATTERNS), "human": (HUMANS, HUMAN_PATTERNS), "text": (LETTERS, TEXT_PATTERNS),
    "number": (NUMBERS, NUMBER_PATTERNS), "style": (STYLES, STYLE_PATTERNS), "emotion": (EMOTIONS, EMOTION_PATTERNS),
    "action": (ACTIONS, ACTION_PATTERNS),
}

CONCEPT_SEEDS = {
    "color": ["a red color", "blue and green tones", "a colorful palette", "a golden hue"],
    "shape": ["a triangle", "a circle", "geometric shapes", "a regular octagon"],
    "texture": ["a rough texture", "a furry surface", "a woven fabric pattern", "a marbled material"],
    "object": ["a cup", "a laptop", "a jacket", "a household object"],
    "location": ["photo taken in a city", "a landscape", "a place in the mountains", "a beach scene"],
    "animal": ["a dog", "a wild animal", "a bird", "a cat"],
    "human": ["a person", "a group of people", "a woman", "a portrait of a man"],
    "text": ["a letter of the alphabet", "written words", "typography", "a sign with text"],
    "number": ["the number seven", "a digit", "a numeral", "a count of items"],
    "style": ["an artistic style", "a painting style", "a cinematic look", "an abstract artwork"],
    "emotion": ["a happy face", "a sad expression", "an emotion", "a surprised look"],
    "action": ["a person running", "people dancing", "an activity", "someone playing sports"],
}


def concept_texts(concept: str) -> list[str]:
    """Every single-concept text written for ``concept`` (each pattern with each word), in a fixed order."""
    words, patterns = CONCEPT_WORDS[concept]
    return [p.format(w) for p, w in itertools.product(patterns, words)] + (TEXT_EXTRA if concept == "text" else [])


def build_corpus(seed: int = 0, per_concept: int = 250) -> list[str]:
    """A deterministic list of distinct descriptions (``per_concept`` at most per concept, shuffled)."""
    rng = random.Random(seed)
    texts: list[str] = []
    for concept in CONCEPT_WORDS:
        items = concept_texts(concept)
        rng.shuffle(items)
        texts.extend(items[:per_concept])
    # compositional descriptions mixing two concepts, as real captions do
    combos = [f"A {c} {o}" for c, o in itertools.product(COLORS, OBJECTS)]
    combos += [f"A {t} {o}" for t, o in itertools.product(TEXTURES, OBJECTS)]
    combos += [f"A {a} in {loc}" for a, loc in itertools.product(ANIMALS, LOCATIONS)]
    combos += [f"A {h} {act}" for h, act in itertools.product(HUMANS, ACTIONS)]
    combos += [f"A {c} {sh} in {st} style" for c, sh, st in itertools.product(COLORS[:8], SHAPES[:8], STYLES[:8])]
    rng.shuffle(combos)
    texts.extend(combos[: per_concept * 6])
    texts = list(dict.fromkeys(texts))
    rng.shuffle(texts)
    return texts


def corpus_concepts(seed: int = 0, per_concept: int = 250) -> dict[str, str]:
    """The single-concept texts of :func:`build_corpus` with the concept each was written for (its compositional
    texts, which mix two concepts, are left out): the truth against which the clusters' naming can be scored."""
    truth = {t: concept for concept in CONCEPT_WORDS for t in concept_texts(concept)}
    return {t: truth[t] for t in build_corpus(seed, per_concept) if t in truth}
