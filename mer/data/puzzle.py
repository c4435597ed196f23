"""Dual-ATME's HARS "puzzle": a face rebuilt from its eye and mouth crops (Zhou et al., Entropy
25(3):460, 2023).

The authors' repository ships no puzzle code; this follows the paper's figure. A size×size puzzle
(size even) has three tiles, each a landmark box with a margin, resized:

- top left, size/2 × size/2: the eye and brow on the image's left, dlib-68 points 17–21 and 36–41
  (the subject's right eye);
- top right, size/2 × size/2: the eye and brow on the image's right, 22–26 and 42–47;
- bottom, size wide × size/2 high: the mouth, 48–67.

The tiles keep the image's orientation (nothing is mirrored or swapped), so the puzzle reads like
the face. Dual-ATME's HARS input is the flow from the onset frame's puzzle to the apex frame's,
both cut with the onset landmarks, so that the boxes do not move between the two.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from mer.data.faces import dlib_image
from mer.data.regions import Box, landmark_box

PUZZLE_MARGIN = 0.1  # each box widened by 10 % of its width (height) on each side, as in the paper


@dataclass(frozen=True)
class PuzzlePiece:
    """One tile of the puzzle: the landmarks it shows and where it goes.

    Attributes:
        name: "left_eye", "right_eye" (as seen in the image) or "mouth".
        landmarks: 0-based dlib-68 indices whose box is cropped.
        tile: (x0, y0, x1, y1) in halves of the puzzle's side, x1/y1 exclusive.
    """

    name: str
    landmarks: tuple[int, ...]
    tile: tuple[int, int, int, int]


PUZZLE_PIECES = (
    PuzzlePiece("left_eye", (*range(17, 22), *range(36, 42)), (0, 0, 1, 1)),
    PuzzlePiece("right_eye", (*range(22, 27), *range(42, 48)), (1, 0, 2, 1)),
    PuzzlePiece("mouth", tuple(range(48, 68)), (0, 1, 2, 2)),
)


def puzzle_boxes(
    landmarks: np.ndarray, image_shape: tuple[int, ...], *, margin: float = PUZZLE_MARGIN
) -> dict[str, Box]:
    """The box each puzzle piece is cropped from.

    Args:
        landmarks: (68, 2) (x, y) dlib landmarks.
        image_shape: (H, W, ...) of the image the boxes are for.
        margin: fraction of each box's width (height) added on the left and right (top and
            bottom).

    Returns:
        {piece name: (x0, y0, x1, y1)}, x1/y1 exclusive, clipped to the image, in
        `PUZZLE_PIECES` order.

    Raises:
        ValueError: as `mer.data.regions.landmark_box` does.
    """
    return {
        piece.name: landmark_box(landmarks, piece.landmarks, image_shape, margin=margin)
        for piece in PUZZLE_PIECES
    }


def puzzle_tiles(size: int = 28) -> dict[str, Box]:
    """Where each piece goes in a size×size puzzle: {piece name: (x0, y0, x1, y1)}, exclusive.

    Raises:
        ValueError: a size that is not an even int >= 2.
    """
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 2 or size % 2:
        raise ValueError(f"puzzle size must be an even int >= 2, got {size!r}")
    half = int(size) // 2
    tiles = {}
    for piece in PUZZLE_PIECES:
        x0, y0, x1, y1 = piece.tile
        tiles[piece.name] = (half * x0, half * y0, half * x1, half * y1)
    return tiles


def _resize(crop: np.ndarray, width: int, height: int) -> np.ndarray:
    """A (h, w, C) crop as (height, width, C): INTER_AREA when shrinking both ways, else linear."""
    shrinking = crop.shape[0] >= height and crop.shape[1] >= width
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    resized = cv2.resize(crop, (width, height), interpolation=interpolation)
    return resized.reshape(height, width, crop.shape[2])


def puzzle_image(
    image: np.ndarray,
    landmarks: np.ndarray,
    size: int = 28,
    *,
    margin: float = PUZZLE_MARGIN,
) -> np.ndarray:
    """A face rebuilt from its eye and mouth crops (layout in the module docstring).

    Args:
        image: uint8 (H, W, 3) RGB, or grey (H, W) / (H, W, 1).
        landmarks: (68, 2) (x, y) dlib landmarks; for a clip, the onset frame's for every frame.
        size: side of the puzzle, even (Dual-ATME: 28).
        margin: as for `puzzle_boxes`.

    Returns:
        (size, size, C) uint8, C = 3 for RGB and 1 for grey.

    Raises:
        ValueError: a bad image, landmarks, size or margin.
    """
    tiles = puzzle_tiles(size)
    image = dlib_image(image)
    if image.ndim == 2:
        image = image[:, :, None]
    puzzle = np.zeros((int(size), int(size), image.shape[2]), dtype=np.uint8)
    for name, (x0, y0, x1, y1) in puzzle_boxes(landmarks, image.shape, margin=margin).items():
        tile_x0, tile_y0, tile_x1, tile_y1 = tiles[name]
        puzzle[tile_y0:tile_y1, tile_x0:tile_x1] = _resize(
            image[y0:y1, x0:x1], tile_x1 - tile_x0, tile_y1 - tile_y0
        )
    return puzzle
