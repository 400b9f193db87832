"""Qualitative results as JSON, CSV and one self-contained HTML page (images inlined)."""
import base64
import csv
import html
import io
import json
import os

from PIL import Image

THUMBNAIL = 256

PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
.item {{ display: flex; gap: 1.5em; margin-bottom: 2em; align-items: flex-start; }}
.item img {{ width: {size}px; border-radius: 4px; }}
ol {{ margin: 0; padding-left: 1.5em; }}
li {{ margin: 0.2em 0; }}
li:first-child {{ font-weight: bold; }}
.name {{ color: #777; font-size: 0.8em; }}
</style></head><body>
<h1>{title}</h1>
<p>Predicted hierarchy per image, from general (closest to the root) to specific.</p>
{items}
</body></html>
"""
ITEM = """<div class="item"><img alt="{name}" src="data:image/jpeg;base64,{data}">
<div><div class="name">{name}</div><ol>{chain}</ol></div></div>"""


def thumbnail_base64(path):
  with Image.open(path) as im:
    im = im.convert("RGB")
    im.thumbnail((THUMBNAIL, THUMBNAIL))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=85)
  return base64.b64encode(buf.getvalue()).decode("ascii")


def html_page(chains, images_dir, title):
  items = [ITEM.format(name=html.escape(name), data=thumbnail_base64(os.path.join(images_dir, name)),
                       chain="".join(f"<li>{html.escape(t)}</li>" for t in chain))
           for name, chain in chains.items()]
  return PAGE.format(title=html.escape(title), size=THUMBNAIL, items="\n".join(items))


def write_all(chains, images_dir, out_prefix, title="hierre_jax qualitative retrieval"):
  """Writes <out_prefix>.json ({image: [texts]}), .csv (image,level,text) and .html."""
  os.makedirs(os.path.dirname(os.path.abspath(out_prefix)), exist_ok=True)
  with open(out_prefix + ".json", "w", encoding="utf-8") as f:
    json.dump(chains, f, indent=1, ensure_ascii=False)
  with open(out_prefix + ".csv", "w", encoding="utf-8", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["image", "level", "text"])
    for name, chain in chains.items():
      writer.writerows((name, i, text) for i, text in enumerate(chain))
  with open(out_prefix + ".html", "w", encoding="utf-8") as f:
    f.write(html_page(chains, images_dir, title))
