"""What a readable figure needs, checked on the drawn figure: no two texts on top of each other."""
from __future__ import annotations


def overlapping_texts(fig, slack: float = 1.0) -> list[tuple[str, str]]:
    """Pairs of visible, non-empty texts (titles, tick labels, cell labels, legend entries) whose drawn boxes
    intersect by more than ``slack`` pixels in both directions."""
    from matplotlib.text import Text

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in fig.findobj(Text)
             if t.get_visible() and t.get_text().strip()]
    clashes = []
    for i, (ta, a) in enumerate(boxes):
        for tb, b in boxes[i + 1:]:
            if min(a.x1, b.x1) - max(a.x0, b.x0) > slack and min(a.y1, b.y1) - max(a.y0, b.y0) > slack:
                clashes.append((ta, tb))
    return clashes
