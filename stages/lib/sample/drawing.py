"""Drawing the sample dataset's images: a random scene with one cartoon animal in it, per class.

Every image is a random scene: a two-colour linear gradient at a random angle, 1..6 random clutter shapes (ellipses,
rectangles, triangles and other polygons, lines, pie slices, arcs), and one cartoon animal head, half of the time
with a body, of random fur colour, size (head radius 20..32 % of the shorter side), position (5 % of the time
anywhere, so partly outside the frame; large animals with a body are often cut at the bottom), slight rotation and
stretch; 30 % of the time one or two clutter shapes are drawn in front of it, 30 % of the time it is box-blurred,
then brightness/contrast are jittered and gaussian noise is added. Image size, colours, background, clutter and
noise come from the *same* distribution for every class (eye and nose colours too). The classes differ only in
shape (ANIMALS, in order):

* cats: round, slightly wide face, upright pointed triangular ears, narrow almond eyes with slit pupils, a small
  triangular nose, a "w" mouth and whiskers;
* dogs: slightly tall face, long floppy ears hanging down at the sides, a wide muzzle, a big round nose, round eyes;
* rabbits: two long upright ears, round dark eyes, buck teeth;
* bears: small round ears on top, a wide head, a large round muzzle with a big nose, small eyes;
* mice: very big round ears, a head narrowing to a pointed snout, long whiskers;
* birds: an owl's face: no ears, a facial disc around two big round eyes, a hooked beak;
* frogs: a wide flat head, bulging eyes on top, a wide smiling mouth;
* pigs: folded triangular ears, a big flat snout with two nostrils;
* foxes: tall pointed ears set wide, a head narrowing to a long pointed snout, pale cheeks;
* fish: a fish from the side, with tail and fins, facing left or right.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

_FUR = np.array(
    [
        (236, 232, 222),  # white
        (226, 202, 160),  # cream
        (212, 170, 92),  # golden
        (206, 122, 52),  # ginger
        (188, 150, 104),  # tan
        (122, 78, 42),  # brown
        (72, 48, 32),  # dark brown
        (132, 132, 138),  # grey
        (92, 92, 100),  # dark grey
        (36, 34, 36),  # black
    ],
    dtype=np.float64,
)
_EYE = np.array([(90, 160, 60), (200, 170, 40), (120, 80, 30), (80, 140, 200), (60, 40, 25)], dtype=np.float64)
_NOSE = np.array([(20, 18, 18), (70, 42, 30), (222, 130, 140), (150, 90, 80)], dtype=np.float64)
_PINK = (226, 140, 150)
_BEAK = np.array([(232, 170, 40), (240, 200, 60), (200, 120, 40), (90, 80, 70)], dtype=np.float64)
_SUPERSAMPLE = 2


def _rgb(c: Sequence[float]) -> tuple[int, int, int]:
    return tuple(int(min(255, max(0, round(v)))) for v in c)  # type: ignore[return-value]


def _jitter(rng: np.random.Generator, base: np.ndarray, amount: float) -> np.ndarray:
    return np.clip(base + rng.uniform(-amount, amount, size=3), 0, 255)


def _background(rng: np.random.Generator, width: int, height: int, supersample: int) -> Image.Image:
    c1 = rng.uniform(0, 255, size=3).astype(np.float32)
    c2 = rng.uniform(0, 255, size=3).astype(np.float32)
    theta = rng.uniform(0, 2 * math.pi)
    # A linear gradient is computed on a coarse grid and upsampled bilinearly (exact for a linear ramp, and fast).
    gw, gh = 33, 33
    xs = np.linspace(0, width, gw, dtype=np.float32) * math.cos(theta)
    ys = np.linspace(0, height, gh, dtype=np.float32) * math.sin(theta)
    t = ys[:, None] + xs[None, :]
    t -= t.min()
    t /= max(float(t.max()), 1e-6)
    arr = c1 + t[..., None] * (c2 - c1)
    img = Image.fromarray(np.round(arr).astype(np.uint8), "RGB").resize((width, height), Image.Resampling.BILINEAR)
    if supersample > 1:  # nearest upsampling: the final box-filter reduce() gives back exactly these pixels
        img = img.resize((width * supersample, height * supersample), Image.Resampling.NEAREST)
        width, height = img.size
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(1, 7))):
        _clutter_shape(rng, draw, width, height)
    return img


def _clutter_shape(rng: np.random.Generator, draw: ImageDraw.ImageDraw, width: int, height: int) -> None:
    side = min(width, height)
    cx, cy = rng.uniform(0, width), rng.uniform(0, height)
    r = rng.uniform(0.03, 0.22) * side
    colour = _rgb(rng.uniform(0, 255, size=3))
    kind = int(rng.integers(0, 6))
    if kind == 0:
        draw.ellipse([cx - r, cy - r * rng.uniform(0.3, 1.0), cx + r, cy + r * rng.uniform(0.3, 1.0)], fill=colour)
    elif kind == 1:
        draw.rectangle([cx - r, cy - r * rng.uniform(0.2, 1.2), cx + r * rng.uniform(0.2, 1.5), cy + r], fill=colour)
    elif kind == 2:  # triangles and other polygons (distractors for the ears)
        n = int(rng.integers(3, 7))
        angles = np.sort(rng.uniform(0, 2 * math.pi, size=n))
        radii = r * rng.uniform(0.4, 1.0, size=n)
        draw.polygon([(cx + a * math.cos(b), cy + a * math.sin(b)) for a, b in zip(radii, angles)], fill=colour)
    elif kind == 3:
        pts = [(cx, cy)] + [(rng.uniform(0, width), rng.uniform(0, height)) for _ in range(int(rng.integers(1, 3)))]
        draw.line(pts, fill=colour, width=int(rng.integers(1, max(2, side // 40))))
    elif kind == 4:
        start = rng.uniform(0, 360)
        draw.pieslice([cx - r, cy - r, cx + r, cy + r], start, start + rng.uniform(30, 300), fill=colour)
    else:
        draw.arc(
            [cx - r, cy - r, cx + r, cy + r],
            rng.uniform(0, 360),
            rng.uniform(0, 360),
            fill=colour,
            width=int(rng.integers(1, max(2, side // 60))),
        )


class _Pen:
    """Draws in head units (head radius 1, head centre at the origin, y down) onto the (supersampled) image, applying
    the animal's placement: scale ``k`` pixels per unit, anisotropic ``stretch``, rotation ``angle`` and the head
    centre ``origin`` in pixels."""

    def __init__(self, draw, k: float, origin: tuple[float, float], angle: float, stretch: float, outline, line_w):
        self.draw, self.k, self.ox, self.oy = draw, k, origin[0], origin[1]
        self.ca, self.sa, self.stretch = math.cos(angle), math.sin(angle), stretch
        self.outline, self.lw = outline, line_w

    def p(self, x: float, y: float) -> tuple[float, float]:
        x, y = x * self.stretch * self.k, y / self.stretch * self.k
        return (self.ox + x * self.ca - y * self.sa, self.oy + x * self.sa + y * self.ca)

    def ellipse(self, cx, cy, rx, ry, fill, outline=True, angle=0.0) -> None:
        self.poly(_ellipse_points(cx, cy, rx, ry, angle), fill, outline)

    def poly(self, pts, fill, outline=True) -> None:
        xy = [self.p(x, y) for x, y in pts]
        if outline and self.outline is not None:
            self.draw.polygon(xy, fill=fill, outline=self.outline, width=self.lw)
        else:
            self.draw.polygon(xy, fill=fill)

    def line(self, pts, fill, width_units: float) -> None:
        self.draw.line(
            [self.p(x, y) for x, y in pts], fill=fill, width=max(1, round(width_units * self.k)), joint="curve"
        )


def _ellipse_points(cx, cy, rx, ry, angle=0.0, n=40):
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    x, y = rx * np.cos(t), ry * np.sin(t)
    ca, sa = math.cos(angle), math.sin(angle)
    return list(zip(cx + x * ca - y * sa, cy + x * sa + y * ca))


def _rotate(pts, angle, cx=0.0, cy=0.0):
    ca, sa = math.cos(angle), math.sin(angle)
    return [(cx + x * ca - y * sa, cy + x * sa + y * ca) for x, y in pts]


def _draw_cat(rng, pen: _Pen, fur, second, eye, nose) -> None:
    fur_c, second_c = _rgb(fur), _rgb(second)
    inner = _rgb(_PINK if rng.random() < 0.6 else second)
    # Upright pointed ears, drawn first so the head hides their base.
    phi = rng.uniform(0.55, 0.85)  # where the ears sit on the head (radians from the top)
    ear_half = rng.uniform(0.34, 0.48)
    ear_h = rng.uniform(0.85, 1.25)
    tilt = rng.uniform(-0.05, 0.3)
    for side in (-1, 1):
        bx, by = side * 0.82 * math.sin(phi), -0.82 * math.cos(phi)
        axis = phi * 0.55 + tilt
        ax, ay = side * math.sin(axis), -math.cos(axis)
        apex = (bx + ear_h * ax, by + ear_h * ay)
        left = (bx - ear_half * -ay * side, by - ear_half * ax * side)
        right = (bx + ear_half * -ay * side, by + ear_half * ax * side)
        pen.poly([left, apex, right], fur_c)
        gx, gy = (left[0] + apex[0] + right[0]) / 3, (left[1] + apex[1] + right[1]) / 3
        pen.poly([(gx + 0.55 * (x - gx), gy + 0.55 * (y - gy) + 0.06) for x, y in (left, apex, right)], inner, False)
    rx, ry = rng.uniform(1.0, 1.12), rng.uniform(0.86, 0.98)
    pen.ellipse(0, 0, rx, ry, fur_c)
    if rng.random() < 0.55:  # whisker pads
        for side in (-1, 1):
            pen.ellipse(side * 0.17, 0.42, 0.2, 0.16, second_c, False)
    # Narrow almond eyes with slit pupils.
    ex, ey = rng.uniform(0.34, 0.44), rng.uniform(-0.18, 0.0)
    ew, eh = rng.uniform(0.17, 0.24), rng.uniform(0.07, 0.12)
    slant = rng.uniform(0.05, 0.3)
    xs = np.linspace(-1, 1, 15)
    lens = [(x * ew, -eh * (1 - x * x)) for x in xs] + [(x * ew, eh * (1 - x * x)) for x in xs[::-1]]
    for side in (-1, 1):
        pts = _rotate(lens, -side * slant)
        pen.poly([(side * ex + x, ey + y) for x, y in pts], _rgb(eye))
        pen.ellipse(side * ex, ey, eh * rng.uniform(0.25, 0.45), eh * 0.95, (10, 10, 10), False)
    # Small nose, "w" mouth, whiskers.
    ny, nw = rng.uniform(0.24, 0.32), rng.uniform(0.08, 0.11)
    pen.poly([(-nw, ny - 0.05), (nw, ny - 0.05), (0, ny + 0.06)], _rgb(nose), False)
    dark = _rgb(fur * 0.3)
    pen.line([(0, ny + 0.06), (0, ny + 0.15)], dark, 0.025)
    for side in (-1, 1):
        pen.line([(0, ny + 0.15), (side * 0.08, ny + 0.2), (side * 0.17, ny + 0.14)], dark, 0.025)
    whisker = (245, 245, 240) if rng.random() < 0.5 else (25, 25, 25)
    length = rng.uniform(1.35, 1.8)
    for side in (-1, 1):
        for dy in (-0.1, 0.02, 0.14)[: int(rng.integers(2, 4))]:
            y0 = ny + 0.12 + dy * 0.5
            pen.line([(side * 0.28, y0), (side * length, y0 + dy * 2.2 + rng.uniform(-0.06, 0.06))], whisker, 0.02)


def _draw_dog(rng, pen: _Pen, fur, second, eye, nose) -> None:
    fur_c, second_c = _rgb(fur), _rgb(second)
    rx, ry = rng.uniform(0.84, 0.98), rng.uniform(0.96, 1.1)
    pen.ellipse(0, 0, rx, ry, fur_c)
    # Tongue below the muzzle (drawn first; the muzzle covers its top).
    my, mrx, mry = rng.uniform(0.5, 0.62), rng.uniform(0.5, 0.64), rng.uniform(0.36, 0.46)
    if rng.random() < 0.45:
        pen.ellipse(rng.uniform(-0.1, 0.1), my + mry * 0.8, rng.uniform(0.12, 0.17), rng.uniform(0.18, 0.26), _PINK)
    muzzle_c = second_c if rng.random() < 0.7 else fur_c
    pen.ellipse(0, my, mrx, mry, muzzle_c)
    # Big nose with a highlight, mouth line.
    ny, nrx, nry = my - mry * rng.uniform(0.35, 0.55), rng.uniform(0.2, 0.27), rng.uniform(0.12, 0.17)
    pen.ellipse(0, ny, nrx, nry, _rgb(nose), False)
    pen.ellipse(-nrx * 0.35, ny - nry * 0.35, nrx * 0.22, nry * 0.22, (235, 235, 235), False)
    dark = _rgb(fur * 0.3)
    mouth_y = my + mry * 0.6
    pen.line([(0, ny + nry), (0, mouth_y)], dark, 0.03)
    for side in (-1, 1):
        pen.line([(0, mouth_y), (side * mrx * 0.35, mouth_y + 0.05), (side * mrx * 0.7, mouth_y - 0.06)], dark, 0.03)
    # Round eyes with round pupils and a highlight.
    ex, ey, er = rng.uniform(0.3, 0.4), rng.uniform(-0.25, -0.08), rng.uniform(0.09, 0.14)
    for side in (-1, 1):
        pen.ellipse(side * ex, ey, er, er, _rgb(eye))
        pen.ellipse(side * ex, ey, er * 0.6, er * 0.6, (10, 10, 10), False)
        pen.ellipse(side * ex - er * 0.3, ey - er * 0.3, er * 0.22, er * 0.22, (240, 240, 240), False)
    # Long floppy ears hanging down at the sides, drawn last so they overlap the face.
    ear_c = _rgb(fur * rng.uniform(0.4, 0.7)) if rng.random() < 0.5 else second_c
    ear_len, ear_w = rng.uniform(0.95, 1.45), rng.uniform(0.26, 0.36)
    ax, ay = rng.uniform(0.62, 0.8), rng.uniform(-0.8, -0.55)
    swing = rng.uniform(-0.05, 0.45)  # radians outwards from hanging straight down
    for side in (-1, 1):
        angle = side * swing
        cx, cy = side * ax + side * math.sin(swing) * ear_len / 2, ay + math.cos(swing) * ear_len / 2
        # An elongated drop: wide rounded tip at the bottom, narrower at the top.
        t = np.linspace(0, 2 * math.pi, 40, endpoint=False)
        ys = -np.cos(t) * ear_len / 2
        xs = np.sin(t) * ear_w * (0.7 + 0.3 * (ys / (ear_len / 2) + 1) / 2)
        pts = _rotate(list(zip(xs, ys)), -angle, cx, cy)
        pen.poly(pts, ear_c)


def _draw_rabbit(rng, pen: _Pen, fur, second, eye, nose) -> None:
    fur_c, second_c = _rgb(fur), _rgb(second)
    inner = _rgb(_PINK if rng.random() < 0.6 else second)
    # Two long upright ears, drawn first so the head hides their base.
    length, width, spread = rng.uniform(1.3, 1.9), rng.uniform(0.2, 0.28), rng.uniform(0.25, 0.45)
    tilt = rng.uniform(0.0, 0.35)
    for side in (-1, 1):
        cx, cy = side * spread + side * math.sin(tilt) * length / 2, -0.7 - math.cos(tilt) * length / 2
        pen.ellipse(cx, cy, width, length / 2, fur_c, angle=side * tilt)
        pen.ellipse(cx, cy + 0.05, width * 0.5, length / 2 * 0.75, inner, False, angle=side * tilt)
    pen.ellipse(0, 0, rng.uniform(0.88, 1.0), rng.uniform(0.92, 1.05), fur_c)
    for side in (-1, 1):  # cheeks
        pen.ellipse(side * 0.16, 0.42, 0.2, 0.15, second_c, False)
    ex, ey, er = rng.uniform(0.36, 0.46), rng.uniform(-0.2, -0.05), rng.uniform(0.1, 0.14)
    for side in (-1, 1):
        pen.ellipse(side * ex, ey, er, er * 1.15, (12, 12, 12), False)
        pen.ellipse(side * ex - er * 0.3, ey - er * 0.35, er * 0.25, er * 0.25, (240, 240, 240), False)
    ny = rng.uniform(0.22, 0.3)
    pen.ellipse(0, ny, 0.09, 0.06, _rgb(nose), False)
    dark = _rgb(fur * 0.3)
    pen.line([(0, ny + 0.06), (0, ny + 0.2)], dark, 0.025)
    for side in (-1, 1):  # buck teeth
        x0, x1 = side * 0.005, side * 0.09
        pen.poly([(x0, ny + 0.2), (x1, ny + 0.2), (x1, ny + 0.36), (x0, ny + 0.36)], (246, 246, 240))


def _draw_bear(rng, pen: _Pen, fur, second, eye, nose) -> None:
    fur_c, second_c = _rgb(fur), _rgb(second)
    # Small round ears on top of the head.
    er, ex, ey = rng.uniform(0.26, 0.36), rng.uniform(0.62, 0.78), rng.uniform(-0.82, -0.66)
    for side in (-1, 1):
        pen.ellipse(side * ex, ey, er, er, fur_c)
        pen.ellipse(side * ex, ey, er * 0.55, er * 0.55, second_c, False)
    pen.ellipse(0, 0, rng.uniform(1.05, 1.18), rng.uniform(0.92, 1.02), fur_c)
    # A large round muzzle with a big dark nose on top of it.
    my, mrx, mry = rng.uniform(0.3, 0.42), rng.uniform(0.4, 0.5), rng.uniform(0.3, 0.38)
    pen.ellipse(0, my, mrx, mry, second_c)
    pen.ellipse(0, my - mry * 0.45, mrx * 0.45, mry * 0.35, _rgb(nose * 0.4), False)
    dark = _rgb(fur * 0.3)
    pen.line([(0, my - mry * 0.1), (0, my + mry * 0.5)], dark, 0.03)
    # Small dark eyes.
    ex, ey, r = rng.uniform(0.34, 0.44), rng.uniform(-0.25, -0.1), rng.uniform(0.06, 0.09)
    for side in (-1, 1):
        pen.ellipse(side * ex, ey, r, r, (12, 12, 12), False)


def _draw_mouse(rng, pen: _Pen, fur, second, eye, nose) -> None:
    fur_c = _rgb(fur)
    inner = _rgb(_PINK if rng.random() < 0.7 else second)
    # Very big round ears at the upper sides.
    er, ex, ey = rng.uniform(0.5, 0.68), rng.uniform(0.8, 0.95), rng.uniform(-0.75, -0.55)
    for side in (-1, 1):
        pen.ellipse(side * ex, ey, er, er, fur_c)
        pen.ellipse(side * ex, ey, er * 0.65, er * 0.65, inner, False)
    # A head narrowing to a pointed snout.
    t = np.linspace(0, 2 * math.pi, 48, endpoint=False)
    snout = rng.uniform(1.15, 1.35)
    pts = [(0.8 * math.sin(a), -0.8 * math.cos(a) if math.cos(a) > 0 else -snout * math.cos(a)) for a in t]
    pen.poly([(x * (0.55 + 0.45 * min(1.0, (1.0 - y) / 1.2)), y) for x, y in pts], fur_c)
    ey2, r = rng.uniform(-0.2, -0.05), rng.uniform(0.08, 0.12)
    for side in (-1, 1):
        pen.ellipse(side * 0.3, ey2, r, r * 1.2, (12, 12, 12), False)
        pen.ellipse(side * 0.3 - r * 0.3, ey2 - r * 0.4, r * 0.25, r * 0.25, (240, 240, 240), False)
    pen.ellipse(0, snout - 0.08, 0.09, 0.07, _rgb(_PINK), False)
    whisker = (245, 245, 240) if rng.random() < 0.5 else (25, 25, 25)
    for side in (-1, 1):
        for dy in (-0.12, 0.0, 0.12):
            pen.line([(side * 0.12, snout - 0.2), (side * rng.uniform(1.2, 1.6), snout - 0.2 + dy * 2)], whisker, 0.018)


def _draw_bird(rng, pen: _Pen, fur, second, eye, nose) -> None:
    """An owl's face: no ears, a facial disc around two big round eyes, a hooked beak."""
    fur_c, second_c = _rgb(fur), _rgb(second)
    pen.ellipse(0, 0, rng.uniform(0.95, 1.08), rng.uniform(0.98, 1.1), fur_c)
    dr, dx, dy = rng.uniform(0.4, 0.48), rng.uniform(0.38, 0.46), rng.uniform(-0.15, 0.0)
    for side in (-1, 1):
        pen.ellipse(side * dx, dy, dr, dr, second_c)
    ir = dr * rng.uniform(0.5, 0.62)
    iris = _rgb(_BEAK[rng.integers(len(_BEAK))]) if rng.random() < 0.7 else _rgb(eye)
    for side in (-1, 1):
        pen.ellipse(side * dx, dy, ir, ir, iris)
        pen.ellipse(side * dx, dy, ir * 0.55, ir * 0.55, (10, 10, 10), False)
        pen.ellipse(side * dx - ir * 0.3, dy - ir * 0.3, ir * 0.18, ir * 0.18, (240, 240, 240), False)
    beak = _rgb(_jitter(rng, _BEAK[rng.integers(len(_BEAK))], 20))
    by, bw, bh = dy + rng.uniform(0.18, 0.26), rng.uniform(0.12, 0.17), rng.uniform(0.3, 0.42)
    pen.poly([(-bw, by), (bw, by), (0.02, by + bh)], beak)


def _draw_frog(rng, pen: _Pen, fur, second, eye, nose) -> None:
    fur_c, second_c = _rgb(fur), _rgb(second)
    # Bulging eyes on top, drawn first: the wide flat head covers their lower half.
    er, ex, ey = rng.uniform(0.28, 0.38), rng.uniform(0.52, 0.7), rng.uniform(-0.62, -0.5)
    for side in (-1, 1):
        pen.ellipse(side * ex, ey, er, er, fur_c)
    pen.ellipse(0, 0, rng.uniform(1.15, 1.35), rng.uniform(0.62, 0.76), fur_c)
    for side in (-1, 1):
        pen.ellipse(side * ex, ey, er * 0.75, er * 0.75, second_c, False)
        pen.ellipse(side * ex, ey, er * 0.5, er * 0.28, (10, 10, 10), False)  # a horizontal pupil
    # A wide smiling mouth across the head, two nostrils.
    dark = _rgb(fur * 0.3)
    my, width = rng.uniform(0.18, 0.32), rng.uniform(0.85, 1.05)
    xs = np.linspace(-width, width, 21)
    pen.line([(x, my + 0.12 * (1 - (x / width) ** 2)) for x in xs], dark, 0.04)
    for side in (-1, 1):
        pen.ellipse(side * 0.12, -0.05, 0.035, 0.025, dark, False)


def _draw_pig(rng, pen: _Pen, fur, second, eye, nose) -> None:
    fur_c, second_c = _rgb(fur), _rgb(second)
    pen.ellipse(0, 0, rng.uniform(1.0, 1.12), rng.uniform(0.9, 1.0), fur_c)
    # Ears: triangles on the top corners, folded forward over the head.
    for side in (-1, 1):
        base = [(side * 0.35, -0.88), (side * 0.92, -0.5)]
        tip = (side * rng.uniform(0.85, 1.05), rng.uniform(-0.25, -0.05))
        pen.poly([base[0], base[1], tip], second_c)
    # The snout: a big flat oval with two nostrils.
    sy, srx, sry = rng.uniform(0.22, 0.32), rng.uniform(0.34, 0.44), rng.uniform(0.24, 0.3)
    pen.ellipse(0, sy, srx, sry, _rgb(_jitter(rng, np.array(_PINK, float), 25)) if rng.random() < 0.5 else second_c)
    dark = _rgb(fur * 0.3)
    for side in (-1, 1):
        pen.ellipse(side * srx * 0.38, sy, srx * 0.14, sry * 0.32, dark, False)
    ex, ey, r = rng.uniform(0.32, 0.42), rng.uniform(-0.3, -0.16), rng.uniform(0.06, 0.08)
    for side in (-1, 1):
        pen.ellipse(side * ex, ey, r, r, (12, 12, 12), False)


def _draw_fox(rng, pen: _Pen, fur, second, eye, nose) -> None:
    fur_c, second_c = _rgb(fur), _rgb(second)
    # Tall pointed ears set wide, then a head that narrows to a long pointed snout.
    ear_h, ear_half = rng.uniform(1.0, 1.35), rng.uniform(0.3, 0.4)
    for side in (-1, 1):
        bx = side * rng.uniform(0.58, 0.72)
        apex = (side * rng.uniform(0.85, 1.05), -0.55 - ear_h)
        pen.poly([(bx - ear_half, -0.45), apex, (bx + ear_half, -0.45)], fur_c)
        pen.poly([(bx - ear_half * 0.5, -0.5), (apex[0] * 0.95, apex[1] + 0.3), (bx + ear_half * 0.5, -0.5)],
                 _rgb(fur * 0.3), False)  # fmt: skip
    tip = rng.uniform(1.05, 1.25)
    head = [(-1.05, -0.45), (-0.95, -0.75), (0.95, -0.75), (1.05, -0.45), (0.6, 0.35), (0.12, tip), (-0.12, tip),
            (-0.6, 0.35)]  # fmt: skip
    pen.poly(head, fur_c)
    for side in (-1, 1):  # pale cheeks down to the snout
        pen.poly([(side * 1.02, -0.35), (side * 0.15, 0.3), (side * 0.1, tip - 0.05), (side * 0.55, 0.4)],
                 second_c, False)  # fmt: skip
    pen.ellipse(0, tip - 0.05, 0.12, 0.08, _rgb(nose * 0.3), False)
    ex, ey = rng.uniform(0.34, 0.44), rng.uniform(-0.25, -0.1)
    for side in (-1, 1):
        pen.poly(_rotate([(-0.16, 0), (0, -0.06), (0.16, 0), (0, 0.06)], side * 0.3, side * ex, ey), _rgb(eye))
        pen.ellipse(side * ex, ey, 0.025, 0.055, (10, 10, 10), False)


def _draw_fish(rng, pen: _Pen, fur, second, eye, nose) -> None:
    """A fish seen from the side, facing left or right."""
    fur_c, second_c = _rgb(fur), _rgb(second)
    facing = 1 if rng.random() < 0.5 else -1  # the side the head is on
    length, height = rng.uniform(1.15, 1.35), rng.uniform(0.5, 0.7)
    tail = rng.uniform(0.45, 0.7)
    x0 = -facing * (length - 0.1)
    back = x0 - facing * tail
    pen.poly([(x0, 0), (back, -tail * 0.9), (x0 - facing * tail * 0.7, 0), (back, tail * 0.9)], second_c)
    pen.poly(
        [(-0.3, -height * 0.85), (0.05 * facing, -height - rng.uniform(0.25, 0.45)), (0.4, -height * 0.85)], second_c
    )  # fmt: skip  (dorsal fin)
    pen.ellipse(0, 0, length, height, fur_c)
    for k in range(int(rng.integers(0, 4))):  # stripes
        x = -facing * (0.1 + 0.3 * k)
        pen.line([(x, -height * 0.8), (x, height * 0.8)], second_c, 0.08)
    gill = facing * length * 0.45
    pen.line([(gill + facing * 0.1 * math.sin(a), height * 0.6 * math.cos(a)) for a in np.linspace(-1.2, 1.2, 9)],
             _rgb(fur * 0.35), 0.035)  # fmt: skip
    ex, er = facing * length * 0.68, rng.uniform(0.1, 0.14)
    pen.ellipse(ex, -height * 0.25, er, er, (240, 240, 235))
    pen.ellipse(ex, -height * 0.25, er * 0.55, er * 0.55, (10, 10, 10), False)
    pen.line([(facing * length * 0.95, height * 0.15), (facing * length * 0.8, height * 0.22)], _rgb(fur * 0.3), 0.03)


@dataclass(frozen=True)
class Animal:
    name: str  # the class folder: plural
    singular: str  # the file name prefix
    draw: Callable  # (rng, pen, fur, second, eye, nose): the face in head units, over the head's ellipse


# In this order: the `sample` source takes the first data.sample_classes of them. cats and dogs first, so two
# classes are the cats-vs-dogs sample; their drawings (and so their bytes) do not depend on the others.
ANIMALS = (
    Animal("cats", "cat", _draw_cat),
    Animal("dogs", "dog", _draw_dog),
    Animal("rabbits", "rabbit", _draw_rabbit),
    Animal("bears", "bear", _draw_bear),
    Animal("mice", "mouse", _draw_mouse),
    Animal("birds", "bird", _draw_bird),
    Animal("frogs", "frog", _draw_frog),
    Animal("pigs", "pig", _draw_pig),
    Animal("foxes", "fox", _draw_fox),
    Animal("fish", "fish", _draw_fish),
)
CLASS_NAMES = tuple(animal.name for animal in ANIMALS)


def class_index(label: str | int) -> int:
    """Index in ANIMALS of a class name, its singular, or an index."""
    if isinstance(label, (int, np.integer)) and not isinstance(label, bool) and 0 <= int(label) < len(ANIMALS):
        return int(label)
    for i, animal in enumerate(ANIMALS):
        if label in (animal.name, animal.singular):
            return i
    raise ValueError(f"label must be one of {CLASS_NAMES} (or an index below {len(ANIMALS)}), got {label!r}")


def draw_animal(rng: np.random.Generator, label: str | int, width: int, height: int) -> Image.Image:
    """Draw one random RGB scene of size ``width`` x ``height`` with a cartoon animal of class ``label`` in it (pure:
    all randomness comes from ``rng``). ``label`` is a class name of CLASS_NAMES, its singular, or its index."""
    drawer = ANIMALS[class_index(label)].draw
    width, height = int(width), int(height)
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    ss = _SUPERSAMPLE  # everything is drawn at ss x the size, then box-filtered down: cheap anti-aliasing
    img = _background(rng, width, height, ss)
    side = min(width, height) * ss

    # Everything here is drawn from the same distribution for both classes, except the class-specific face.
    fur = _jitter(rng, _FUR[rng.integers(len(_FUR))], 22)
    if rng.random() < 0.6:
        second = np.clip(fur + (255 - fur) * rng.uniform(0.35, 0.75), 0, 255)
    else:
        second = fur * rng.uniform(0.35, 0.7)
    eye = _jitter(rng, _EYE[rng.integers(len(_EYE))], 20)
    nose = _jitter(rng, _NOSE[rng.integers(len(_NOSE))], 15)
    k = rng.uniform(0.2, 0.32) * side  # head radius in (supersampled) pixels
    outline = _rgb(fur * 0.35) if rng.random() < 0.9 else None
    angle = math.radians(float(np.clip(rng.normal(0, 9), -22, 22)))
    stretch = rng.uniform(0.9, 1.1)
    if rng.random() < 0.05:  # sometimes partly outside the frame
        centre = (rng.uniform(0.0, 1.0) * width * ss, rng.uniform(0.0, 1.0) * height * ss)
    else:
        centre = (rng.uniform(0.35, 0.65) * width * ss, rng.uniform(0.35, 0.6) * height * ss)
    draw = ImageDraw.Draw(img)
    pen = _Pen(draw, k, centre, angle, stretch, outline, max(1, round(0.035 * k)))
    if rng.random() < 0.5:  # a body below the head
        bx, brx, bry = rng.uniform(-0.2, 0.2), rng.uniform(0.9, 1.35), rng.uniform(0.8, 1.15)
        pen.ellipse(bx, 1.75, brx, bry, _rgb(fur))
        if rng.random() < 0.5:
            pen.ellipse(bx, 1.6, brx * 0.45, bry * 0.6, _rgb(second), False)
    drawer(rng, pen, fur, second, eye, nose)
    for _ in range(int(rng.integers(1, 3)) if rng.random() < 0.3 else 0):  # occluders in front
        _clutter_shape(rng, draw, width * ss, height * ss)
    img = img.reduce(ss)

    if rng.random() < 0.3:
        img = img.filter(ImageFilter.BoxBlur(rng.uniform(0.4, 1.2)))
    # Brightness/contrast jitter and gaussian (luminance) noise.
    gain, bias, sigma = rng.uniform(0.8, 1.15), rng.uniform(-20, 20), rng.uniform(0, 9)
    arr = np.asarray(img, dtype=np.float32) * np.float32(gain) + np.float32(bias)
    arr += (rng.standard_normal((height, width), dtype=np.float32) * np.float32(sigma))[..., None]
    np.clip(arr, 0, 255, out=arr)
    return Image.fromarray(arr.astype(np.uint8), "RGB")
