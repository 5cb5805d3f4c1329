import numpy as np
import pytest
from PIL import Image

from transferkit.data import DataError, array_to_rgb, open_rgb


def _save(tmp_path, img, name, **kwargs):
    path = tmp_path / name
    img.save(path, **kwargs)
    return path


def test_rgb_is_returned_as_is(tmp_path):
    path = _save(tmp_path, Image.new("RGB", (5, 3), (10, 200, 30)), "a.png")
    img = open_rgb(path)
    assert (img.mode, img.size, img.getpixel((0, 0))) == ("RGB", (5, 3), (10, 200, 30))


def test_grey_becomes_rgb(tmp_path):
    img = open_rgb(_save(tmp_path, Image.new("L", (4, 3), 100), "grey.png"))
    assert (img.mode, img.size, img.getpixel((3, 2))) == ("RGB", (4, 3), (100, 100, 100))


def test_grey_alpha_is_composited_over_white(tmp_path):
    la = Image.new("LA", (2, 1))
    la.putpixel((0, 0), (0, 0))  # fully transparent black
    la.putpixel((1, 0), (0, 255))  # opaque black
    img = open_rgb(_save(tmp_path, la, "la.png"))
    assert [img.getpixel((x, 0)) for x in range(2)] == [(255, 255, 255), (0, 0, 0)]


def test_rgba_is_composited_over_white(tmp_path):
    rgba = Image.new("RGBA", (3, 1))
    rgba.putpixel((0, 0), (255, 0, 0, 0))
    rgba.putpixel((1, 0), (255, 0, 0, 255))
    rgba.putpixel((2, 0), (0, 0, 0, 128))
    img = open_rgb(_save(tmp_path, rgba, "rgba.png"))
    assert img.getpixel((0, 0)) == (255, 255, 255)
    assert img.getpixel((1, 0)) == (255, 0, 0)
    assert all(126 <= v <= 128 for v in img.getpixel((2, 0)))


def test_palette_with_transparency_is_composited_over_white(tmp_path):
    p = Image.new("P", (2, 1))
    p.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    p.putpixel((0, 0), 0)
    p.putpixel((1, 0), 1)
    path = _save(tmp_path, p, "p.png", transparency=0)
    assert "transparency" in Image.open(path).info
    img = open_rgb(path)
    assert [img.getpixel((x, 0)) for x in range(2)] == [(255, 255, 255), (0, 0, 255)]


def test_cmyk_becomes_rgb(tmp_path):
    img = open_rgb(_save(tmp_path, Image.new("CMYK", (2, 2), (0, 255, 255, 0)), "cmyk.tif"))
    assert img.mode == "RGB"
    assert img.getpixel((0, 0)) == (255, 0, 0)


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    a = np.array([[65535, 32896, 257, 0]], dtype=np.uint16)
    path = _save(tmp_path, Image.fromarray(a), "deep.png")
    assert Image.open(path).mode.startswith("I")
    img = open_rgb(path)
    assert [img.getpixel((x, 0))[0] for x in range(4)] == [255, 128, 1, 0]


def test_32_bit_int_and_float_images(tmp_path):
    ints = Image.fromarray(np.array([[65535, 32896, 0]], dtype=np.int32))
    assert ints.mode == "I"
    img = open_rgb(_save(tmp_path, ints, "i.tif"))
    assert [img.getpixel((x, 0))[0] for x in range(3)] == [255, 128, 0]

    floats = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32))
    img = open_rgb(_save(tmp_path, floats, "f.tif"))
    assert [img.getpixel((x, 0))[0] for x in range(3)] == [0, 128, 255]


def test_exif_orientation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: stored landscape, shown portrait
    path = _save(tmp_path, Image.new("RGB", (6, 4), (50, 50, 50)), "rotated.jpg", exif=exif)
    assert Image.open(path).size == (6, 4)
    assert open_rgb(path).size == (4, 6)


def test_truncated_jpeg_names_the_path(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    full = _save(tmp_path, Image.fromarray(noise), "full.jpg", quality=95)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(DataError, match="cut.jpg") as info:
        open_rgb(cut)
    assert str(cut) in str(info.value)


def test_text_file_named_jpg_names_the_path(tmp_path):
    fake = tmp_path / "notes.jpg"
    fake.write_text("not an image")
    with pytest.raises(DataError, match="not a recognised image format") as info:
        open_rgb(fake)
    assert str(fake) in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        open_rgb(tmp_path / "absent.png")


def test_array_to_rgb():
    grey = array_to_rgb(np.full((3, 5), 7, dtype=np.uint8))
    assert (grey.mode, grey.size, grey.getpixel((0, 0))) == ("RGB", (5, 3), (7, 7, 7))
    colour = np.zeros((2, 2, 3), dtype=np.uint8)
    colour[..., 2] = 9
    assert array_to_rgb(colour).getpixel((1, 1)) == (0, 0, 9)
    with pytest.raises(DataError, match="uint8"):
        array_to_rgb(np.zeros((2, 2), dtype=np.float32))
    with pytest.raises(DataError, match="uint8"):
        array_to_rgb(np.zeros((2, 2, 4), dtype=np.uint8))
