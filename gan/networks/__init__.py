"""Generator and discriminator architectures, built from config (`model` group): one file per
family (`mlp`: the Keras example's; `dcgan`; `resnet`: SNGAN/BigGAN; `r3gan`), what they share in `base`.

Every generator takes `(z, labels=None)` and every discriminator `(x, labels=None)`, returning
one logit per image. `labels` are used only by conditional networks (`model.conditional=true`):
G concatenates a label embedding to z (Mirza & Osindero 2014) or, the residual ones, conditions
its BatchNorms on one; D either concatenates one to its input (`concat`) or adds the inner
product of one with its last features (`projection`, Miyato & Koyama 2018).
"""

from gan.networks.base import Discriminator, Generator, keras_param_count
from gan.networks.dcgan import DCGANDiscriminator, DCGANGenerator
from gan.networks.mlp import MLPDiscriminator, MLPGenerator
from gan.networks.r3gan import R3GANDiscriminator, R3GANGenerator
from gan.networks.resnet import ResNetDiscriminator, ResNetGenerator

__all__ = ["DCGANDiscriminator", "DCGANGenerator", "Discriminator", "Generator", "MLPDiscriminator", "MLPGenerator",
           "R3GANDiscriminator", "R3GANGenerator", "ResNetDiscriminator", "ResNetGenerator", "keras_param_count"]
