#!/usr/bin/python3
"""Reference for tests/unit/data_mds_test.cpp: the MDS statistic computed the way the official
tool (tools/ssl/generate_mcl_samples.py, ALGORITHM.md 5.1) does it, with numpy and torch:

  * colour image: RAFT's flow_viz.flow_to_image (max-length normalisation + 1e-5, numpy float math,
    floor(255 col) as uint8), then float32;
  * motion map: scipy.ndimage.sobel on u and v (scipy is not installed here, so its default
    mode='reflect' is spelt out with np.pad(mode='symmetric'), derivative [-1,0,1], smoothing [1,2,1]);
  * attention: torch F.avg_pool2d(k=s=block) + F.interpolate(size=(h,w), mode='bilinear'), then / max
    (or / sum), literally as the official cal_attention_map (block is a parameter here, 28 there);
  * rgb_map differential, per-frame mean, clip scores, np.median, strict '>'.

usage: data_mds_reference.py FLOW_DIR BLOCK CLIP_LEN CLIP_STRIDE WEIGHT_TYPE ATT_TYPE POOL > out.json
FLOW_DIR holds NNNN.flo files (Middlebury), read in name order.
"""
import glob
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F


def read_flo(path):
    with open(path, 'rb') as f:
        tag = np.fromfile(f, np.float32, 1)[0]
        assert tag == 202021.25, path
        w = int(np.fromfile(f, np.int32, 1)[0])
        h = int(np.fromfile(f, np.int32, 1)[0])
        data = np.fromfile(f, np.float32, 2 * w * h)
    return data.reshape(h, w, 2)


def make_colorwheel():
    RY, YG, GC, CB, BM, MR = 15, 6, 4, 11, 13, 6
    ncols = RY + YG + GC + CB + BM + MR
    cw = np.zeros((ncols, 3))
    col = 0
    cw[0:RY, 0] = 255
    cw[0:RY, 1] = np.floor(255 * np.arange(0, RY) / RY)
    col += RY
    cw[col:col + YG, 0] = 255 - np.floor(255 * np.arange(0, YG) / YG)
    cw[col:col + YG, 1] = 255
    col += YG
    cw[col:col + GC, 1] = 255
    cw[col:col + GC, 2] = np.floor(255 * np.arange(0, GC) / GC)
    col += GC
    cw[col:col + CB, 1] = 255 - np.floor(255 * np.arange(CB) / CB)
    cw[col:col + CB, 2] = 255
    col += CB
    cw[col:col + BM, 2] = 255
    cw[col:col + BM, 0] = np.floor(255 * np.arange(0, BM) / BM)
    col += BM
    cw[col:col + MR, 2] = 255 - np.floor(255 * np.arange(MR) / MR)
    cw[col:col + MR, 0] = 255
    return cw


def flow_uv_to_colors(u, v):
    img = np.zeros((u.shape[0], u.shape[1], 3), np.uint8)
    cw = make_colorwheel()
    ncols = cw.shape[0]
    rad = np.sqrt(np.square(u) + np.square(v))
    a = np.arctan2(-v, -u) / np.pi
    fk = (a + 1) / 2 * (ncols - 1)
    k0 = np.floor(fk).astype(np.int32)
    k1 = k0 + 1
    k1[k1 == ncols] = 0
    f = fk - k0
    for i in range(cw.shape[1]):
        tmp = cw[:, i]
        col0 = tmp[k0] / 255.0
        col1 = tmp[k1] / 255.0
        col = (1 - f) * col0 + f * col1
        idx = rad <= 1
        col[idx] = 1 - rad[idx] * (1 - col[idx])
        col[~idx] = col[~idx] * 0.75
        img[:, :, i] = np.floor(255 * col)
    return img


def flow_to_image(flow):
    u, v = flow[:, :, 0], flow[:, :, 1]
    rad = np.sqrt(np.square(u) + np.square(v))
    rad_max = np.max(rad)
    eps = 1e-5
    return flow_uv_to_colors(u / (rad_max + eps), v / (rad_max + eps))


def sobel_reflect(x, axis):
    p = np.pad(x, 1, mode='symmetric')  # scipy 'reflect' = (d c b a | a b c d)
    if axis == 1:
        d = p[:, 2:] - p[:, :-2]           # along x, rows still padded
        return d[:-2, :] + 2 * d[1:-1, :] + d[2:, :]
    d = p[2:, :] - p[:-2, :]
    return d[:, :-2] + 2 * d[:, 1:-1] + d[:, 2:]


def motion_map(flow):
    u, v = flow[..., 0], flow[..., 1]
    ux, uy, vx, vy = sobel_reflect(u, 1), sobel_reflect(u, 0), sobel_reflect(v, 1), sobel_reflect(v, 0)
    return np.sqrt(np.square(ux) + np.square(uy) + np.square(vx) + np.square(vy))


def attention_map(mp, block, att_type):
    cmp = torch.from_numpy(mp).unsqueeze(0).unsqueeze(0).float()
    hw = cmp.shape[-2:]
    cmp = F.avg_pool2d(cmp, kernel_size=(block, block), stride=(block, block))
    cmp = F.interpolate(cmp, size=hw, mode='bilinear', align_corners=False)[0, 0]
    if att_type == 'max':
        cmp = cmp / cmp.max()
    elif att_type == 'sum':
        cmp = cmp / cmp.sum()
    return cmp


def main():
    flow_dir, block, clip_len, clip_stride, weight_type, att_type, pool = sys.argv[1:8]
    block, clip_len, clip_stride = int(block), int(clip_len), int(clip_stride)
    pool_func = (lambda x: x.mean((0, 1))) if pool == 'avg' else (lambda x: x.max((0, 1)))
    flows = [read_flo(p) for p in sorted(glob.glob(os.path.join(flow_dir, '*.flo')))]
    weights = []
    for flow in flows:
        if weight_type == 'motion_map':
            w = motion_map(flow)
        elif weight_type == 'attention_map':
            w = attention_map(motion_map(flow), block, att_type).numpy()
        else:
            w = flow_to_image(flow).astype(np.float32)
            if att_type != 'none':
                w = attention_map(motion_map(flow), block, att_type).unsqueeze(-1).numpy() * w
        weights.append(w)
    if weight_type == 'rgb_map':
        weights.append(weights[-1])
        weights = [np.linalg.norm(weights[i] - weights[i + 1], axis=-1) for i in range(len(weights) - 1)]
    values = [float(pool_func(w)) for w in weights]
    n = len(values)
    scores = []
    for i in range(n):
        cur = 0.0
        for j in range(clip_len):
            if i + j * clip_stride < n:
                cur += values[i + j * clip_stride]
        scores.append(cur / clip_len)
    med = np.median(scores)
    chosen = [i for i, s in enumerate(scores) if s > med]
    json.dump({'frame_values': values, 'scores': scores, 'chosen': chosen}, sys.stdout)


if __name__ == '__main__':
    main()
