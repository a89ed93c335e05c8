"""A procedural dataset: coloured shapes on coloured backgrounds, with captions and questions.

"two red circles on a blue background"; "how many circles are there?" -> "two". Every sample
is a pure function of (seed, index), so training, held-out evaluation and the demo draw from
the same distribution without storing images.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import PIL.Image
import PIL.ImageDraw

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (215, 38, 38),
    "green": (40, 160, 60),
    "blue": (40, 80, 215),
    "yellow": (235, 205, 35),
    "purple": (135, 55, 175),
    "orange": (240, 135, 25),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
    "gray": (128, 128, 128),
}
SHAPE_COLORS = ("red", "green", "blue", "yellow", "purple", "orange")
SHAPES = ("circle", "square", "triangle")
COUNTS = ("one", "two", "three")
IMAGE_SIZE = 80
# Objects sit at the centres of a 4 x 4 grid of 20-pixel cells, which the demo models' 10-pixel
# patches tile exactly: a small ViT trained from scratch for minutes tells shapes apart reliably
# only when a shape looks the same in its patches wherever it is (free placement stays at chance).
CELL = 20
GRID = IMAGE_SIZE // CELL
RADII = (6, 10)  # object sizes, in pixels (low inclusive, high exclusive)
TRAIN_SEED = 1  # the dataset the demo models train on
HELD_OUT_SEED = 2  # the dataset they are evaluated and demonstrated on


@dataclass(frozen=True)
class Scene:
    """One synthetic image's content and its texts."""

    count: int
    color: str
    shape: str
    background: str
    boxes: tuple[tuple[int, int, int], ...]  # (centre x, centre y, radius) per object

    @property
    def caption(self) -> str:
        noun = self.shape if self.count == 1 else self.shape + "s"
        article = "an" if self.background[0] in "aeiou" else "a"
        return f"{COUNTS[self.count - 1]} {self.color} {noun} on {article} {self.background} background"

    def altered(self, rng: np.random.Generator, field: str | None = None) -> Scene:
        """The same scene description with one attribute changed: `field` ("count", "color", "shape"
        or "background"), or one drawn at random."""
        field = field or str(rng.choice(["count", "color", "shape", "background"]))
        if field == "count":
            return replace(self, count=int(rng.choice([n for n in range(1, len(COUNTS) + 1) if n != self.count])))
        if field == "color":
            return replace(
                self, color=str(rng.choice([c for c in SHAPE_COLORS if c not in (self.color, self.background)]))
            )
        if field == "shape":
            return replace(self, shape=str(rng.choice([s for s in SHAPES if s != self.shape])))
        return replace(self, background=str(rng.choice([c for c in COLORS if c not in (self.color, self.background)])))

    def questions(self) -> list[tuple[str, str]]:
        """(question, one-word answer) pairs about this scene."""
        plural = self.shape + "s"
        return [
            (f"how many {plural} are there?", COUNTS[self.count - 1]),
            (f"what color are the {plural}?", self.color),
            ("what shape are the objects?", self.shape),
            ("what color is the background?", self.background),
        ]


def scene(seed: int, index: int) -> Scene:
    """The scene of sample `index` in the dataset `seed`."""
    rng = np.random.default_rng([seed, index])
    count = int(rng.integers(1, len(COUNTS) + 1))
    color = str(rng.choice(SHAPE_COLORS))
    shape = str(rng.choice(SHAPES))
    background = str(rng.choice([c for c in COLORS if c != color]))
    cells = rng.choice(GRID * GRID, size=count, replace=False)  # distinct cells: objects never overlap
    radii = rng.integers(RADII[0], RADII[1], size=count)
    centres = [(int(c % GRID) * CELL + CELL // 2, int(c // GRID) * CELL + CELL // 2) for c in cells]
    boxes = tuple((x, y, int(r)) for (x, y), r in zip(centres, radii, strict=True))
    return Scene(count, color, shape, background, boxes)


def render(item: Scene) -> PIL.Image.Image:
    """Draw a scene as an 80 x 80 RGB image."""
    image = PIL.Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), COLORS[item.background])
    draw = PIL.ImageDraw.Draw(image)
    fill = COLORS[item.color]
    for x, y, r in item.boxes:
        if item.shape == "circle":
            draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)
        elif item.shape == "square":
            draw.rectangle((x - r, y - r, x + r, y + r), fill=fill)
        else:
            draw.polygon([(x, y - r), (x - r, y + r), (x + r, y + r)], fill=fill)
    return image


def samples(seed: int, start: int, count: int) -> list[tuple[PIL.Image.Image, Scene]]:
    """(image, scene) for samples start .. start + count - 1 of dataset `seed`."""
    return [(render(item), item) for item in (scene(seed, index) for index in range(start, start + count))]
