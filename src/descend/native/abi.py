"""The C ABI of the kernels: ctypes mirrors of their argument structs, and the ids they share
with Python. Each struct mirrors its C++ twin field by field; the loader compares the sizes."""

from __future__ import annotations

import ctypes

import torch

# The ``dtype`` field of Args and LabArgs: the tensor dtypes the kernels take.
DTYPES = {torch.float32: 0, torch.float64: 1}

# the family index of LabArgs (lab.cpp's step_family switch, in this order)
FAMILIES = ("sgd", "adagrad", "rmsprop", "adam", "nadam", "lion")
FAMILIES += ("ademamix", "schedule_free")  # AdEMAMix, Schedule-Free (issue #14)
FAMILIES += ("radam", "adamax", "adopt")  # RAdam, Adamax, ADOPT (issue #14)
FAMILIES += ("adadelta", "rprop", "asgd")  # Adadelta, Rprop, ASGD (issue #14)

# cautious mask (issue #14, i14kc): the families whose drivers read ``Args.cautious`` (the
# mask u·1[u·x > 0]·n/(Σ + 1) in two passes, drivers.h); any other keeps the chain under it.
CAUTIOUS = ("sgd", "rmsprop", "adam", "nadam", "lion")

# Landscape ids of ``landscapes.h`` (``enum Id``); the loader checks each name against the
# library's ``descend_landscape_name``.
LANDSCAPES = {
    "rosenbrock": 1,
    "bowl": 2,
    "ravine": 3,
    "booth": 4,
    "himmelblau": 5,
    "beale": 6,
    "six-hump-camel": 7,
    "goldstein-price": 8,
    "saddle": 9,
    "monkey-saddle": 10,
    "quadratic": 11,
    "double-well": 12,
    "quartic": 13,
}


class Args(ctypes.Structure):
    """One kernel call's arguments; mirrors ``struct Args`` in ``cpu.cpp`` field by field."""

    _fields_ = [
        ("n", ctypes.c_int64),
        ("numel", ctypes.c_void_p),
        ("param", ctypes.c_void_p),
        ("grad", ctypes.c_void_p),
        ("s0", ctypes.c_void_p),
        ("s1", ctypes.c_void_p),
        ("s2", ctypes.c_void_p),
        ("step", ctypes.c_void_p),
        ("extra", ctypes.c_void_p),
        ("fresh", ctypes.c_void_p),
        ("dtype", ctypes.c_int32),
        ("step_f64", ctypes.c_int32),
        ("extra_f64", ctypes.c_int32),
        ("l2", ctypes.c_int32),
        ("dec", ctypes.c_int32),
        ("mom", ctypes.c_int32),
        ("debias", ctypes.c_int32),
        ("ams", ctypes.c_int32),
        ("hat", ctypes.c_int32),
        ("bias1", ctypes.c_int32),
        ("bias2", ctypes.c_int32),
        ("centered", ctypes.c_int32),
        ("schedule", ctypes.c_int32),
        ("gscale", ctypes.c_double),
        ("clip", ctypes.c_double),
        ("l2_coef", ctypes.c_double),
        ("lr", ctypes.c_double),
        ("keep", ctypes.c_double),
        ("beta1", ctypes.c_double),
        ("beta2", ctypes.c_double),
        ("eps_in", ctypes.c_double),
        ("eps_out", ctypes.c_double),
        ("beta", ctypes.c_double),
        ("mom_gain", ctypes.c_double),
        ("nest_scale", ctypes.c_double),
        ("alpha", ctypes.c_double),
        ("lr_decay", ctypes.c_double),
        ("psi", ctypes.c_double),
        ("row_len", ctypes.c_int64),
        ("row_lr", ctypes.c_void_p),
        ("row_keep", ctypes.c_void_p),
        ("row_l2", ctypes.c_void_p),
        ("row_gain", ctypes.c_void_p),
        ("row_nest", ctypes.c_void_p),
        ("el_lr", ctypes.c_void_p),
        ("el_keep", ctypes.c_void_p),
        ("el_l2", ctypes.c_void_p),
        # AdEMAMix (issue #14)
        ("ademamix_beta3", ctypes.c_double),
        ("ademamix_alpha", ctypes.c_double),
        ("ademamix_alpha_warmup", ctypes.c_double),
        ("ademamix_beta3_warmup", ctypes.c_double),
        # Schedule-Free (issue #14)
        ("sf_lr", ctypes.c_double),
        ("sf_warmup", ctypes.c_double),
        ("sf_r", ctypes.c_double),
        ("sf_power", ctypes.c_double),
        ("sf_wd", ctypes.c_double),
        ("sf_lr_max", ctypes.c_void_p),
        ("sf_weight_sum", ctypes.c_void_p),
        ("sf_rms", ctypes.c_int32),
        ("sf_decay", ctypes.c_int32),
        ("sf_lag", ctypes.c_int32),
        ("sf_pad", ctypes.c_int32),
        # RAdam, Adamax, ADOPT (issue #14)
        ("radam_threshold", ctypes.c_double),
        ("radam_eps_root", ctypes.c_double),
        ("radam_nesterov", ctypes.c_int32),
        ("adopt_clip", ctypes.c_int32),
        ("adopt_nesterov", ctypes.c_int32),
        ("adopt_first_decay", ctypes.c_int32),
        ("adopt_clip_exp", ctypes.c_double),
        ("adopt_clip_at", ctypes.c_void_p),
        # Adadelta, Rprop, ASGD (Adadelta's rho is alpha, its eps eps_in; ASGD's eta is extra)
        ("rprop_eta_minus", ctypes.c_double),
        ("rprop_eta_plus", ctypes.c_double),
        ("rprop_step_min", ctypes.c_double),
        ("rprop_step_max", ctypes.c_double),
        ("asgd_lr", ctypes.c_double),
        ("asgd_lambd", ctypes.c_double),
        ("asgd_alpha", ctypes.c_double),
        ("asgd_t0", ctypes.c_double),
        ("asgd_mu", ctypes.c_void_p),
        ("asgd_mu_f64", ctypes.c_int32),
        ("asgd_round32", ctypes.c_int32),
        # cautious mask (issue #14, i14kc): 1 masks the core's update (families in CAUTIOUS)
        ("cautious", ctypes.c_int32),
    ]


class LabArgs(ctypes.Structure):
    """One lab call's arguments; mirrors ``struct LabArgs`` in ``track.h`` field by field."""

    _fields_ = [
        ("rows", ctypes.c_int64),
        ("dim", ctypes.c_int64),
        ("dtype", ctypes.c_int32),
        ("family", ctypes.c_int32),
        ("function", ctypes.c_int32),
        ("f_known", ctypes.c_int32),
        ("consts", ctypes.c_double * 8),
        ("t", ctypes.c_int64),
        ("steps", ctypes.c_int64),
        ("f_star", ctypes.c_double),
        ("tol", ctypes.c_double),
        ("bound", ctypes.c_double),
        ("flip_below", ctypes.c_double),
        ("theta", ctypes.c_void_p),
        ("grad", ctypes.c_void_p),
        ("f", ctypes.c_void_p),
        ("prev", ctypes.c_void_p),
        ("vel_prev", ctypes.c_void_p),
        ("path_length", ctypes.c_void_p),
        ("overshoots", ctypes.c_void_p),
        ("reached_count", ctypes.c_void_p),
        ("frozen", ctypes.c_void_p),
        ("diverged_step", ctypes.c_void_p),
        ("stopped_step", ctypes.c_void_p),
        ("stop", ctypes.c_void_p),
        ("losses", ctypes.c_void_p),
        ("trajectory", ctypes.c_void_p),
        ("loss_slot", ctypes.c_void_p),
        ("theta_slot", ctypes.c_void_p),
    ]


class CheckArgs(ctypes.Structure):
    """One column of tensors to check before a kernel call; mirrors ``struct CheckArgs`` in
    ``check.cpp`` field by field."""

    _fields_ = [
        ("n", ctypes.c_int64),
        ("impl", ctypes.c_void_p),
        ("numel", ctypes.c_void_p),
        ("out_numel", ctypes.c_void_p),
        ("out_ptr", ctypes.c_void_p),
        ("dtype", ctypes.c_int32),
        ("reason", ctypes.c_int32),
        ("bad", ctypes.c_int64),
    ]


# ``descend_check``'s reasons (``enum Reason`` in check.cpp), as the fast path words them.
CHECK_REASONS = {
    1: "the tensor check is not initialised",
    2: "has no plain storage to point at",
    3: "has the wrong dtype",
    4: "is not on the CPU (fast kernels: CPU)",
    5: "is not a strided (dense) tensor",
    6: "is non-contiguous",
    7: "has a size that is not its parameter's",
    8: "reaches past the end of its storage",
}

# The torch C shim functions ``check.cpp`` reads tensors with, in ``descend_set_torch``'s
# order, then the constants it compares with.
TORCH_SHIM = (
    "get_dtype",
    "get_device_type",
    "get_layout",
    "is_contiguous",
    "get_numel",
    "get_storage_offset",
    "get_storage_size",
    "get_data_ptr",
)
TORCH_SHIM_CONSTS = ("dtype_float32", "dtype_float64", "device_type_cpu", "layout_strided")
