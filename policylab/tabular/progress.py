"""Running a learner in chunks so a progress bar can move; the numbers do not depend on it."""

from __future__ import annotations


def run_in_chunks(run_chunk, total: int, chunk: int, progress: bool, desc: str, unit: str) -> list:
    """Call ``run_chunk(n)`` until ``total`` units are done, ``chunk`` at a time when showing a
    tqdm bar (else in one call); the learners carry their state across calls, so the numbers
    do not depend on the chunking. Returns the list of chunk outputs."""
    if not progress:
        return [run_chunk(total)]
    from tqdm import tqdm

    outputs, done = [], 0
    with tqdm(total=total, desc=desc, unit=unit, unit_scale=True) as bar:
        while done < total:
            n = min(chunk, total - done)
            outputs.append(run_chunk(n))
            done += n
            bar.update(n)
    return outputs
