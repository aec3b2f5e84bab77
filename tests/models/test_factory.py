"""The dispatcher from the model config to a builder, and the full-resolution head."""

import numpy as np

from tf_medseg.config import load_config
from tf_medseg.models import build_model, main_output


def test_build_model_takes_shapes_and_counts():
    config = load_config("tiny.yaml", ["model.name=attention_unet", "data.context=[-1,0,1]"])
    model = build_model(config.model, (32, 32, 6), 5)  # 2 modalities x 3 offsets, 5 logits
    assert model.name == "attention_unet" and model.input_shape == (None, 32, 32, 6)
    assert model.output_shape == (None, 32, 32, 5)
    assert model.get_layer("enc0_conv1").kernel.shape[-1] == config.model.base_filters


def test_main_output_of_deep_supervision():
    config = load_config("tiny.yaml", ["model.deep_supervision=true", "model.depth=3"])
    model = build_model(config.model, (32, 32, 1), 3)
    assert len(model.outputs) == 2
    main = main_output(model)
    x = np.ones((1, 32, 32, 1), "float32")
    np.testing.assert_allclose(main(x), model(x)[0])
    plain = build_model(load_config("tiny.yaml").model, (32, 32, 1), 3)
    assert main_output(plain) is plain


def test_a_network_of_your_own_is_its_own_main_output():
    import keras
    inputs = keras.Input((8, 8, 1))
    own = keras.Model(inputs, keras.layers.Conv2D(3, 1, name="head")(inputs))
    assert main_output(own) is own
