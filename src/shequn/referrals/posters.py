"""QR codes and PNG invite posters (qrcode + Pillow).

Chinese text needs a CJK font: the first found of ``SHEQUN_POSTER_FONT``, WenQuanYi Micro Hei
(Debian ``fonts-wqy-microhei``) or Noto CJK; without one, Pillow's default font is used (Latin only,
but the poster still renders and the QR code still works)."""

from __future__ import annotations

import io
import os
from functools import lru_cache
from pathlib import Path

import qrcode
from PIL import Image, ImageDraw, ImageFont

FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/wqy-microhei/wqy-microhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
)


@lru_cache(maxsize=1)
def cjk_font_path() -> str | None:
    env = os.environ.get("SHEQUN_POSTER_FONT")
    for cand in ([env] if env else []) + list(FONT_CANDIDATES):
        if cand and Path(cand).is_file():
            return cand
    return None


def _font(size: int, path: str | None) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    if path:
        try:
            return ImageFont.truetype(path, size)
        except OSError:
            pass
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # very old Pillow
        return ImageFont.load_default()


def qr_image(url: str, box_size: int = 8) -> Image.Image:
    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=box_size, border=2)
    qr.add_data(url)
    qr.make(fit=True)
    img: Image.Image = qr.make_image(fill_color="black", back_color="white").get_image().convert("RGB")
    return img


def qr_png(url: str) -> bytes:
    buf = io.BytesIO()
    qr_image(url).save(buf, format="PNG")
    return buf.getvalue()


def poster_png(*, url: str, member_name: str, community_name: str, tagline: str = "扫码加入",
               font_path: str | None = "auto") -> bytes:
    """A 750×1200 poster: community name, "<member> 邀请你加入", the QR code and the short link."""
    path = cjk_font_path() if font_path == "auto" else font_path
    width, height = 750, 1200
    img = Image.new("RGB", (width, height), (250, 244, 232))
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, 0, width, 260], fill=(196, 58, 49))
    title, sub, small = _font(56, path), _font(36, path), _font(26, path)
    draw.text((width // 2, 110), community_name[:16], font=title, fill="white", anchor="mm")
    draw.text((width // 2, 200), f"{member_name[:12]} 邀请你加入", font=sub, fill="white", anchor="mm")
    qr = qr_image(url, box_size=12).resize((460, 460))
    img.paste(qr, ((width - 460) // 2, 360))
    draw.text((width // 2, 880), tagline[:20], font=sub, fill=(60, 60, 60), anchor="mm")
    draw.text((width // 2, 950), url[:60], font=small, fill=(120, 120, 120), anchor="mm")
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()
