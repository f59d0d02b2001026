"""The reference numbers of API.md §11 (computed with torch-pme 0.5), to 1e-10."""

import pytest
import torch

from torchpme import (
    Calculator,
    CalculatorDipole,
    CoulombPotential,
    EwaldCalculator,
    InversePowerLawPotential,
    P3MCalculator,
    PMECalculator,
    PotentialDipole,
)

DTYPE = torch.float64
CELL = torch.tensor([[5.0, 0, 0], [0.5, 4.5, 0], [0.3, 0.2, 4.0]], dtype=DTYPE)
POSITIONS = torch.tensor(
    [[0.1, 0.2, 0.3], [2.6, 2.4, 2.1], [1.2, 3.9, 0.7], [4.1, 0.8, 3.3]], dtype=DTYPE
)
CHARGES = torch.tensor([[1.0, 0.5], [-1.0, 0.2], [0.7, -0.3], [-0.7, 0.1]], dtype=DTYPE)
DIPOLES = torch.tensor(
    [[0.1, 0.2, 0.3], [-0.2, 0.1, 0.0], [0.0, 0.3, -0.1], [0.2, -0.1, 0.1]],
    dtype=DTYPE,
)
NO_PAIRS = (torch.zeros((0, 2), dtype=torch.int64), torch.zeros(0, dtype=DTYPE))
PAIRS = (
    torch.tensor([[0, 1], [0, 2], [1, 3], [2, 3], [0, 0]]),
    torch.tensor([1.5, 2.0, 2.5, 3.0, 4.0], dtype=DTYPE),
)


def coulomb(**kwargs):
    return CoulombPotential(smearing=0.8, **kwargs)


KSPACE = {
    "ewald": (
        lambda: EwaldCalculator(coulomb(), lr_wavelength=0.5),
        None,
        [[-0.169251964157, -0.198076799812], [0.226285964679, -0.0953758481424],
         [-0.0296591528552, 0.114274955966], [0.236201193124, -0.0226536550274]],
    ),
    "pme-h0.4-n4": (
        lambda: PMECalculator(coulomb(), mesh_spacing=0.4, interpolation_nodes=4),
        None,
        [[-0.169299338648, -0.198093723584], [0.22630494086, -0.095379026423],
         [-0.0296994555381, 0.114284651754], [0.236227821202, -0.0226562550898]],
    ),
    "pme-h0.9-n7": (
        lambda: PMECalculator(coulomb(), mesh_spacing=0.9, interpolation_nodes=7),
        None,
        [[-0.169254610642, -0.198078223688], [0.226287210855, -0.0953761159587],
         [-0.029661282541, 0.114276305568], [0.236202655992, -0.022653544347]],
    ),
    "p3m-n1": (
        lambda: P3MCalculator(
            coulomb(), mesh_spacing=0.4, interpolation_nodes=1, cartesian_influence=True
        ),
        None,
        [[-0.179551511675, -0.192253416655], [0.222692936772, -0.0960135534704],
         [-0.0458319569377, 0.104881648362], [0.224577435064, -0.0197041020511]],
    ),
    "p3m-n3": (
        lambda: P3MCalculator(
            coulomb(), mesh_spacing=0.4, interpolation_nodes=3, cartesian_influence=True
        ),
        None,
        [[-0.169297291763, -0.198057062981], [0.226269720624, -0.0953742097922],
         [-0.0296989084098, 0.114232545488], [0.236210321699, -0.0226515346903]],
    ),
    "p3m-n4": (
        lambda: P3MCalculator(
            coulomb(), mesh_spacing=0.4, interpolation_nodes=4, cartesian_influence=True
        ),
        None,
        [[-0.169300385884, -0.198052276532], [0.226270665997, -0.0953741916747],
         [-0.0296950885342, 0.114223613613], [0.236220167075, -0.0226514840764]],
    ),
    "ewald-p2": (
        lambda: EwaldCalculator(
            InversePowerLawPotential(exponent=2, smearing=0.8), lr_wavelength=0.5
        ),
        None,
        [[-0.0206715487424, -0.154625872922], [0.0854197978377, -0.0900946245478],
         [0.0838667089128, 0.0534916156005], [0.138273069921, -0.0321465670983]],
    ),
    "ewald-p4": (
        lambda: EwaldCalculator(
            InversePowerLawPotential(exponent=4, smearing=0.8), lr_wavelength=0.5
        ),
        None,
        [[0.0216024102747, -0.0093656824869], [0.00930122478064, 0.0114464865459],
         [0.0599046908153, 0.0583045024131], [0.0370186452472, 0.0308701075469]],
    ),
    "ewald-slab-z": (
        lambda: EwaldCalculator(coulomb(), lr_wavelength=0.5),
        [True, True, False],
        [[0.159847319599, -0.297356945429], [0.100482632195, -0.183346260207],
         [0.198350660625, 0.0272819282825], [-0.192870550186, -0.165916097795]],
    ),
    "pme-slab-x": (
        lambda: PMECalculator(coulomb(), mesh_spacing=0.4, interpolation_nodes=4),
        [False, True, True],
        [[0.41025469277, -0.357628452745], [0.0152248211237, -0.26451306647],
         [0.201975549372, -0.0225957037158], [-0.449232789226, -0.302269636788]],
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(KSPACE))
def test_kspace_reference(case):
    build, periodic, expected = KSPACE[case]
    periodic = None if periodic is None else torch.tensor(periodic)
    result = build()(CHARGES, CELL, POSITIONS, *NO_PAIRS, periodic=periodic)
    torch.testing.assert_close(
        result, torch.tensor(expected, dtype=DTYPE), rtol=1e-10, atol=1e-12
    )


RSPACE = {
    "direct-half": (
        lambda: Calculator(CoulombPotential()),
        [[0.0916666666667, 0.116666666667], [0.193333333333, 0.186666666667],
         [0.133333333333, 0.141666666667], [-0.0833333333333, -0.01]],
    ),
    "direct-full": (
        lambda: Calculator(CoulombPotential(), full_neighbor_list=True),
        [[-0.0333333333333, 0.0541666666667], [-0.14, 0.02],
         [-0.116666666667, 0.0166666666667], [0, 0]],
    ),
    "direct-exclusion": (
        lambda: Calculator(CoulombPotential(exclusion_radius=2.2, exclusion_degree=2)),
        [[0.220185212188, 0.092566830426], [0.0577978440342, 0.118898922017],
         [0.123309127936, 0.136654563968], [-0.0833333333333, -0.01]],
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(RSPACE))
def test_rspace_reference(case):
    build, expected = RSPACE[case]
    result = build()(CHARGES, CELL, POSITIONS, *PAIRS)
    torch.testing.assert_close(
        result, torch.tensor(expected, dtype=DTYPE), rtol=1e-10, atol=1e-12
    )


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        (
            {},
            [[-0.018090714987, 0.00312147009939], [0.0200153140931, 0.0101676816004],
             [0.00308420196301, 0.00155536357428], [-0.000334979419763, 6.22802954086e-05]],
        ),
        (
            {"exclusion_radius": 2.2},
            [[0.0684052349562, -0.0128809678666], [-0.0719055811265, -0.0359527905632],
             [-0.00500049452889, -0.00250024726444], [0, 0]],
        ),
    ],
    ids=["plain", "exclusion"],
)  # fmt: skip
def test_short_range_reference(kwargs, expected):
    calculator = EwaldCalculator(coulomb(**kwargs), lr_wavelength=0.5)
    result = calculator._compute_rspace(CHARGES, *PAIRS)
    torch.testing.assert_close(
        result, torch.tensor(expected, dtype=DTYPE), rtol=1e-10, atol=1e-12
    )


DIPOLE_PAIRS = (
    torch.tensor([[0, 1], [2, 3]]),
    torch.tensor([[1.0, 0.5, -0.3], [0.2, -1.4, 0.9]], dtype=DTYPE),
)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        (
            {},
            [[0.00904310553473, 0.00303800357288, -0.0250773522387],
             [0.00131042308401, -0.00544716343676, -0.00236069027446],
             [0.00553734954328, 0.0179708062418, 0.0386008487315],
             [-0.00413952178301, 0.0108133415401, -0.00107036444621]],
        ),
        (
            {"epsilon": 1.0},
            [[0.0113702112041, 0.0146735319195, -0.0180960352308],
             [0.00363752875334, 0.00618836490987, 0.00462062673352],
             [0.00786445521261, 0.0296063345884, 0.0455821657394],
             [-0.00181241611368, 0.0224488698867, 0.00591095256176]],
        ),
    ],
    ids=["tinfoil", "epsilon1"],
)  # fmt: skip
def test_dipole_kspace_reference(kwargs, expected):
    calculator = CalculatorDipole(
        PotentialDipole(smearing=0.8, **kwargs), lr_wavelength=0.5
    )
    no_pairs = (
        torch.zeros((0, 2), dtype=torch.int64),
        torch.zeros((0, 3), dtype=DTYPE),
    )
    result = calculator(DIPOLES, CELL, POSITIONS, *no_pairs)
    torch.testing.assert_close(
        result, torch.tensor(expected, dtype=DTYPE), rtol=1e-10, atol=1e-12
    )


def test_dipole_rspace_reference():
    direct = CalculatorDipole(PotentialDipole())(
        DIPOLES, CELL, POSITIONS, *DIPOLE_PAIRS
    )
    expected = [
        [0.0437803668567, 0.0863579763822, -0.0324744479432],
        [-0.0471480873841, 0.0247768010233, 0.120516284589],
        [0.0151099906605, 0.0322220550835, -0.0169231895398],
        [0.0115591428553, -0.04906969467, 0.0414013744098],
    ]
    torch.testing.assert_close(
        direct, torch.tensor(expected, dtype=DTYPE), rtol=1e-10, atol=1e-12
    )
    smeared = CalculatorDipole(PotentialDipole(smearing=0.8), lr_wavelength=0.5)
    expected = [
        [0.054836183838, 0.0630802705767, -0.0271495087487],
        [-0.0485343765013, 0.00247944574263, 0.0734029077356],
        [0.00169136714148, 0.0188300112561, -0.0112624363227],
        [0.00571772328301, -0.0329464673088, 0.0233705562161],
    ]
    result = smeared._compute_rspace(DIPOLES, *DIPOLE_PAIRS)
    torch.testing.assert_close(
        result, torch.tensor(expected, dtype=DTYPE), rtol=1e-10, atol=1e-12
    )
