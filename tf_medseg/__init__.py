"""tf_medseg: U-Net and Attention U-Net for GI tract MRI segmentation in Keras/TensorFlow."""

__version__ = "0.2.0"
