"""What the email pack adds to a served request: the sender's domain, when a client leaves it out."""

from {{ cookiecutter.package_name }}.serving.schema import FrameBuilder, record_model


def test_the_sender_domain_comes_from_the_address_when_left_out(cfg):
    model = record_model(cfg)
    assert model.__name__ == "Email"
    entity = cfg.data.entity
    given = model.model_validate({entity: "Bob@Example.org", "body": "hi"})
    kept = model.model_validate({entity: "a@b.org", "body": "hi", "sender_domain": "c.org"})
    rows = FrameBuilder(cfg).frame([given, kept])
    assert rows["sender_domain"].tolist() == ["example.org", "c.org"]
