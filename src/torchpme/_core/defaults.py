"""Speed policy of the core: chunk sizes, thresholds and backend switches.

None of these values changes a result beyond rounding; each decides how the same
arithmetic is carried out (how much of a loop runs at once, which library
transforms a mesh, when an index structure is built, whether a fused kernel
runs). They are defaults for common hardware, chosen with the benchmark named at
each entry, which is also the way to check another value on another machine.

The code reads them from this module when it runs, so one assignment changes one
for the whole process (a test, a benchmark, a user)::

    import torchpme._core.defaults as defaults

    defaults.PAIRS = 1 << 14

TorchScript reads a value once, when a calculator is scripted.

Chunk sizes apply on CPU only, where a chunk's temporaries stay in cache and the
allocator reuses them; elsewhere, and while ``torch.compile`` traces, a loop takes
everything at once (:func:`torchpme._core.execution.chunk_length`).
"""

import os

__all__ = [
    "EWALD_ENTRIES",
    "HOST_FFT_MIN_POINTS",
    "MESH_STACK",
    "MIN_SPARSE_PAIRS",
    "PAIRS",
    "QEQ_DENSE_ATOMS",
    "STENCIL_ENTRIES",
    "THOLE_REACH",
    "TRITON",
    "TRITON_ATOMS_PER_PROGRAM",
    "TRITON_PAIRS_PER_PROGRAM",
]

#: Neighbour pairs per chunk of the pair distances and the Coulomb pair sum.
#: Trades the per-chunk overhead of small chunks against page faults of fresh
#: pair-sized temporaries above glibc's mmap threshold (32 MB at most): 2¹⁶
#: pairs keep each temporary near 1 MB. Chosen from the forward + backward of
#: millions of pairs in ``benchmarks/calculators.py`` and ``benchmarks/kernels.py``.
PAIRS = 1 << 16

#: Atoms up to which ``torchpme.qeq.equilibrate(solver="auto")`` builds the
#: Coulomb matrix (one calculator call with ``N`` charge channels) and solves
#: the constraint system directly, rather than iterating; either gives the same
#: charges to the solver's tolerance. Where the matrix costs about as much as
#: the iterations a conjugate-gradient solve of a small system takes, in
#: ``benchmarks/qeq.py --dense``.
QEQ_DENSE_ATOMS = 64

#: Thole's damping of induced dipoles (``torchpme.polarisation``) skips the
#: pairs with ``a u³`` above this: their factor ``e^{−a u³}`` is below 4e-18, so
#: the result is the same to rounding and the damping's pair work shrinks to the
#: close pairs (a few per atom instead of the whole list); seen in
#: ``benchmarks/multipoles.py --polarise``.
THOLE_REACH = 40.0

#: Stencil entries (atoms × n³) per chunk of atoms when spreading and gathering.
#: The same trade as :data:`PAIRS` for the ``(n³, atoms)`` index and weight
#: products (a whole system's are hundreds of MB at N = 262144). Set by that
#: size argument, with chunking checked against one pass in ``benchmarks/mesh.py``
#: and ``benchmarks/calculators.py`` (PME and P3M), which measure a change.
STENCIL_ENTRIES = 1 << 17

#: Mesh points transformed together by ``forward_batch`` (a stack of meshes of
#: one size). Larger stacks mean fewer transforms, but buffers that glibc hands
#: back and faults in again on every step; smaller ones mean more transforms.
#: Chosen as the fastest power of two for the batch step of
#: ``benchmarks/batching.py`` (one stack per group, and 2¹⁶ to 2¹⁹ points).
MESH_STACK = 1 << 17

#: Entries (k-vectors × atoms) of one chunk of an Ewald k-sum. Bounds the memory
#: of the ``(K, N)`` phases for any number of k-vectors (16 MB in float64) against
#: more, smaller matrix products. Checked against the memory and time columns of
#: ``benchmarks/calculators.py`` for Ewald.
EWALD_ENTRIES = 1 << 21

#: Pairs from which a kept neighbour list accumulates its forces through a
#: sparse pair incidence (multithreaded) instead of ``index_put_`` (serial).
#: Building the incidence costs a sort of the list, repaid only on long lists
#: used again. Set to the pair chunk size (:data:`PAIRS`) by that argument, not
#: swept; ``benchmarks/calculators.py`` (own distances) measures a change.
MIN_SPARSE_PAIRS = 1 << 16

#: Mesh points from which a single mesh on CPU is transformed by scipy's
#: pocketfft (when scipy is installed) instead of ``torch.fft``. pocketfft's lead
#: grows with the mesh; at 128³ (2²¹ points) the two are even. Chosen from the
#: transforms' share of a step at N = 262144 in ``benchmarks/kernels.py``.
HOST_FFT_MIN_POINTS = 1 << 22

#: Whether CUDA tensors in eager mode use the fused Triton kernels
#: (:mod:`torchpme._core.execution` decides which calls). ``TORCHPME_TRITON=0`` in the
#: environment turns them off, to compare both forms on one machine with
#: ``benchmarks/calculators.py --device cuda``.
TRITON = os.environ.get("TORCHPME_TRITON", "1") != "0"

#: Atoms per Triton program of the spread and gather kernels (a power of two).
#: Trades parallelism over programs against the registers of each. Not swept;
#: ``benchmarks/calculators.py --device cuda`` and ``benchmarks/kernels.py
#: --device cuda`` measure a change.
TRITON_ATOMS_PER_PROGRAM = 64

#: Pairs per Triton program of the distance and pair-sum kernels (a power of
#: two), the same trade, measured by the same benchmarks.
TRITON_PAIRS_PER_PROGRAM = 512
