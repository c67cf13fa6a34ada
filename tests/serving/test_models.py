"""Model names to what they ask for (src/monolith/serving/models.py): the base and each twin, each with its `-rag`
alias; TGI's adapter_id names a twin only; anything else is a 404 naming the field, never the base instead."""

from __future__ import annotations

import pytest

from monolith.config import Settings, TwinSettings
from monolith.errors import ModelNotFound
from monolith.serving.models import ModelChoice, model_names, resolve_adapter, resolve_model


@pytest.fixture
def twins(settings: Settings) -> Settings:
    named = {"ada": TwinSettings(adapter="a", author="Ada"), "notes-rag": TwinSettings(adapter="n")}
    return settings.model_copy(update={"twins": named})


def test_each_name_asks_for_its_model_and_rag(twins: Settings) -> None:
    assert resolve_model(twins, "twin") == ModelChoice("twin")
    assert resolve_model(twins, "twin-rag") == ModelChoice("twin-rag", None, True)
    assert resolve_model(twins, "ada") == ModelChoice("ada", "ada", False, "Ada")
    assert resolve_model(twins, "ada-rag") == ModelChoice("ada-rag", "ada", True, "Ada")
    assert resolve_model(twins, "notes-rag") == ModelChoice("notes-rag", "notes-rag", False, None), "its own name"
    assert resolve_model(twins, "notes-rag-rag").rag
    assert model_names(twins) == ["twin", "twin-rag", "ada", "ada-rag", "notes-rag", "notes-rag-rag"]


@pytest.mark.parametrize("name", ["nobody", "nobody-rag", "ADA", "all-MiniLM-L6-v2", ""])
def test_an_unknown_model_is_a_404_naming_the_field(twins: Settings, name: str) -> None:
    with pytest.raises(ModelNotFound) as raised:
        resolve_model(twins, name, "body.model")
    assert raised.value.status_code == 404 and raised.value.code == "model_not_found"
    assert raised.value.param == "body.model"


def test_tgis_adapter_id_names_a_twin_and_nothing_else(twins: Settings) -> None:
    assert resolve_adapter(twins, None, "parameters.adapter_id") == ModelChoice("twin")
    assert resolve_adapter(twins, "ada", "parameters.adapter_id") == ModelChoice("ada", "ada", False, "Ada")
    for other in ("twin", "ada-rag", "nobody"):
        with pytest.raises(ModelNotFound, match=other):
            resolve_adapter(twins, other, "parameters.adapter_id")
