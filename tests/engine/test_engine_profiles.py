"""Optimization profiles: parsing, checks, which profile covers a shape."""
from __future__ import annotations

import pytest

from fcn_deploy.engine.profiles import (DEFAULT_PROFILE, Profile, max_batch, parse_profiles,
                                        select_profile, validate_profiles)
from fcn_deploy.errors import FCNError


def test_parse_pairs_repeated_options_into_profiles():
    profiles = parse_profiles(["1x3x128x128", "1x3x32x32"], ["1x3x500x500", "1x3x64x64"],
                              ["4x3x1024x1024", "8x3x96x96"])
    assert profiles == [Profile((1, 3, 128, 128), (1, 3, 500, 500), (4, 3, 1024, 1024)),
                        Profile((1, 3, 32, 32), (1, 3, 64, 64), (8, 3, 96, 96))]
    assert profiles[0].describe() == "min 1x3x128x128, opt 1x3x500x500, max 4x3x1024x1024"
    assert parse_profiles(None, None, None) == [Profile(*DEFAULT_PROFILE)]
    assert Profile.from_dict(profiles[1].to_dict()) == profiles[1]


@pytest.mark.parametrize("mins,opts,maxs,message", [
    (["1x3x8x8"], [], ["1x3x9x9"], "each profile needs --min, --opt and --max; got 1 --min, 0 --opt"),
    (["1x3x8"], ["1x3x8x8"], ["1x3x9x9"], r"--min of profile #0 '1x3x8' must have 4 positive"),
    (["1x3x8x8"], ["1x3xax8"], ["1x3x9x9"], r"--opt of profile #0 '1x3xax8' is not of the form"),
    (["1x3x8x8"], ["1x3x0x8"], ["1x3x9x9"], "must have 4 positive dimensions"),
    (["1x3x64x64"], ["1x3x32x32"], ["1x3x96x96"],
     r"profile #0: dimension 2 needs min <= opt <= max, got 64, 32, 96"),
    (["1x3x8x8", "2x3x8x8"], ["1x3x8x8", "1x3x8x8"], ["1x3x8x8", "4x3x8x8"],
     r"profile #1: dimension 0 needs min <= opt <= max, got 2, 1, 4"),
])
def test_bad_profiles_say_what_is_wrong(mins, opts, maxs, message):
    with pytest.raises(FCNError, match=message):
        parse_profiles(mins, opts, maxs)


def test_static_dims_of_the_graph_must_be_fixed_in_every_profile():
    p = Profile((1, 3, 32, 32), (1, 3, 64, 64), (2, 3, 128, 128))
    validate_profiles([p], ["batch", 3, "height", "width"])
    with pytest.raises(FCNError, match=r"dimension 2 of input 'image' is fixed at 64 in the ONNX "
                                       r"graph, but the profile gives min/opt/max 32/64/128"):
        validate_profiles([p], ["batch", 3, 64, "width"])
    with pytest.raises(FCNError, match="dimension 1 of input 'image' is fixed at 3"):
        validate_profiles([Profile((1, 1, 8, 8), (1, 1, 8, 8), (1, 1, 8, 8))], [None, 3, None, None])
    with pytest.raises(FCNError, match="profile #0 has 4 dims but input 'image' has 3"):
        validate_profiles([p], ["batch", 3, "height"])
    with pytest.raises(FCNError, match="at least one optimization profile"):
        validate_profiles([])


def test_select_profile_picks_a_covering_profile_nearest_its_opt():
    small = Profile((1, 3, 32, 32), (1, 3, 64, 64), (1, 3, 256, 256))
    large = Profile((1, 3, 128, 128), (1, 3, 500, 500), (4, 3, 1024, 1024))
    profiles = [small, large]
    assert small.covers((1, 3, 32, 32)) and not small.covers((2, 3, 64, 64))
    assert select_profile(profiles, (1, 3, 64, 64)) == 0
    assert select_profile(profiles, (1, 3, 100, 100)) == 0  # both cover; 2.4x from 64^2, 25x from 500^2
    assert select_profile(profiles, (1, 3, 240, 240)) == 1  # both cover; 14x from 64^2, 4.3x from 500^2
    assert select_profile(profiles, (3, 3, 200, 200)) == 1  # only the large one takes batch 3
    with pytest.raises(FCNError, match=r"input shape 1x3x2000x2000 is outside every optimization "
                                       r"profile of engine m.plan; it accepts #0: min 1x3x32x32, "
                                       r"opt 1x3x64x64, max 1x3x256x256; #1: min 1x3x128x128"):
        select_profile(profiles, (1, 3, 2000, 2000), what="engine m.plan")
    assert max_batch(profiles, (1, 3, 200, 200)) == 4
    assert max_batch(profiles, (1, 3, 40, 40)) == 1
    assert max_batch(profiles, (1, 3, 2000, 2000)) is None
