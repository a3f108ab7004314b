"""Signature vectors: the official example from Midtrans's docs (hash as computed in
../shared/research/midtrans.md §2.2) and the extra sample vectors of §2.3."""
import pytest

from meeting_links.errors import ConfigurationError, InvalidSignature
from meeting_links.midtrans import signature

DOC_KEY = "askvnoibnosifnboseofinbofinfgbiufglnbfg"
OFFICIAL = ("1111", "200", "100000.00",
            "edc076b21793ebe3e17926350f5b8ae67d902fe657b3d0aa31b932d5c127e237"
            "5d308a2bc94f3265ac2d80a1f181a79b997ac178a236fcff35af263fc4d4c231")

VECTORS = [
    OFFICIAL,
    ("Postman-1578568851", "200", "10000.00",
     "6c0f5791b2a167c38d3810c2c0c90e512d1134564d04433c07401cec6741738c63a6d9bff571042799c0aa6873691abd3b573dc7505cb56c41fe8e938a1e272d"),
    ("Order-5100", "200", "154600.00",
     "f78f1fec0ef93e190e2a5d270c41069b7608b15cdddbf894f417b18726341e9e5255e25d5ada7ead2ecad68387ff00911080bffdd0e622b6b216c2b161b1eb4f"),
    ("test-transaction-321", "201", "24145.00",
     "002a760c7a69bb9f2845c915750abb9a85ee412886cab5b166ddcad945b010603562f0cb89ae0b736d365a1c727793d35b30486d16e7360778c18916661720d0"),
]


@pytest.mark.parametrize("order_id,status_code,gross_amount,expected", VECTORS)
def test_signature_vectors(order_id, status_code, gross_amount, expected):
    assert signature.signature_for(order_id, status_code, gross_amount, DOC_KEY) == expected
    signature.verify({"order_id": order_id, "status_code": status_code,
                      "gross_amount": gross_amount, "signature_key": expected}, DOC_KEY)


@pytest.mark.parametrize("field,changed", [
    ("order_id", "1112"), ("status_code", "201"), ("gross_amount", "100000"),
    ("gross_amount", "100000.0"), ("signature_key", OFFICIAL[3].upper()),
    ("signature_key", OFFICIAL[3][:-1] + "0"), ("signature_key", ""), ("signature_key", None),
    ("order_id", None), ("status_code", 2000), ("gross_amount", 100000.00), ("status_code", True),
])
def test_any_change_to_one_field_breaks_it(field, changed):
    body = {"order_id": "1111", "status_code": "200", "gross_amount": "100000.00",
            "signature_key": OFFICIAL[3]}
    body[field] = changed
    with pytest.raises(InvalidSignature):
        signature.verify(body, DOC_KEY)


def test_whole_numbers_sign_as_their_digits_as_in_payment_links_published_notification():
    # docs: technical-reference/payment-link-api.md sends "status_code": 201, "gross_amount": 10000
    body = {"order_id": "1111", "status_code": 200, "gross_amount": "100000.00", "signature_key": OFFICIAL[3]}
    signature.verify(body, DOC_KEY)
    assert signature.signature_for("m-1", "201", "10000", DOC_KEY) == signature.signed(
        {"order_id": "m-1", "status_code": 201, "gross_amount": 10000}, DOC_KEY)["signature_key"]


def test_another_key_breaks_it():
    body = {"order_id": "1111", "status_code": "200", "gross_amount": "100000.00",
            "signature_key": OFFICIAL[3]}
    with pytest.raises(InvalidSignature):
        signature.verify(body, DOC_KEY + "x")


def test_an_empty_server_key_is_refused_not_used():
    with pytest.raises(ConfigurationError):
        signature.signature_for("1111", "200", "100000.00", "")
