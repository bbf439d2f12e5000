"""Work split across data-parallel ranks: each rank maps its share of a tensor, then all ranks
swap results, so that every rank ends with the whole answer for a fraction of the compute."""
import torch
import torch.distributed as dist


def map_in_shards(fn, x, chunk=128):
    """`torch.cat([fn(c) for c in x.split(chunk)])`, computed 1/world per rank under
    torch.distributed (gloo or nccl). `fn` must treat each row independently (per-image
    results), so the split does not change the answer."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return torch.cat([fn(c) for c in x.split(chunk)])
    rank, world = dist.get_rank(), dist.get_world_size()
    per = -(-len(x) // world)                                  # ceil: equal shards for all_gather
    part = x[rank * per:(rank + 1) * per]
    mine = torch.cat([fn(c) for c in part.split(chunk)]) if len(part) else None
    if mine is None:                                           # fewer rows than ranks
        mine = fn(x[:1])[:0]
    padded = torch.cat([mine, mine.new_zeros((per - len(mine), *mine.shape[1:]))])
    gathered = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(gathered, padded)
    return torch.cat(gathered)[:len(x)]
