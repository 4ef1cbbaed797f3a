"""The command line checked before Hydra runs it (alexnet_exp.preflight): here, a ``+`` that
would add a key to a typed section of the config."""

from dataclasses import dataclass, field

import pytest
from omegaconf import OmegaConf

from alexnet_exp.config_store import register_configs
from alexnet_exp.errors import UserError
from alexnet_exp.preflight import preflight, refuse_added_keys

register_configs()


def run_preflight(tmp_path, *args: str) -> None:
    preflight([*args, "data=digits", f"hydra.run.dir={tmp_path}/run"])


@pytest.mark.parametrize(("override", "message"), [
    ("+trainer.epoch=3", "trainer.epoch is not a key of the config; did you mean"
                         " trainer.epochs?"),
    ("++trainer.epoch=3", "trainer.epoch is not a key of the config; did you mean"),
    ("+model.lrn.kk=2", "model.lrn.kk is not a key of the config; did you mean model.lrn.k?"),
    ("+seeds=3", "seeds is not a key of the config; did you mean seed?"),
])
def test_a_plus_cannot_add_a_typo_to_a_typed_section(tmp_path, override, message):
    with pytest.raises(UserError, match="^config: ") as info:
        run_preflight(tmp_path, override)
    assert message in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(UserError, match=message.split(";")[0]):  # each job of a sweep too
        run_preflight(tmp_path, "-m", "seed=1,2", override)


@pytest.mark.parametrize("override", [
    "++trainer.epochs=2",  # a key the schema has: add-or-override is fine
    "+hydra.job.env_set.SOME_VAR=1",  # Hydra's own config: not ours to police
    "debug=fast",
])
def test_a_plus_stays_free_where_it_is_legitimate(tmp_path, override):
    run_preflight(tmp_path, override)


@dataclass
class Section:
    epochs: int = 1


@dataclass
class Schema:
    section: Section = field(default_factory=Section)
    extras: dict = field(default_factory=dict)  # a plain dict: any key may be added


def test_force_add_passes_struct_mode_which_is_why_the_check_exists():
    cfg = OmegaConf.structured(Schema)
    OmegaConf.update(cfg, "extras.note", "hi", force_add=True)
    refuse_added_keys(cfg)  # a new key in a dict with no schema is legitimate
    OmegaConf.update(cfg, "section.epoch", 3, force_add=True)  # what Hydra does for a +
    assert cfg.section.epoch == 3  # OmegaConf took it, typed section or not
    with pytest.raises(UserError, match="section.epoch is not a key of the config; did you"
                                        " mean section.epochs"):
        refuse_added_keys(cfg)
