"""map_in_shards under a real two-process gloo group: every rank gets the whole answer, each
computed only its share of it."""
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from backdrop.shards import map_in_shards


def per_row(x):
    return x * 2 + x.sum(dim=1, keepdim=True)


def worker(rank, world, init_file, n, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        x = torch.arange(n * 3, dtype=torch.float32).view(n, 3)
        seen = []
        result = map_in_shards(lambda c: seen.append(len(c)) or per_row(c), x, chunk=4)
        torch.save({"result": result, "rows_computed": sum(seen)}, f"{out_dir}/{rank}.pt")
    finally:
        dist.destroy_process_group()


def run_group(tmp_path, n, world=2):
    mp.spawn(worker, args=(world, str(tmp_path / f"init{n}"), n, str(tmp_path)), nprocs=world, join=True)
    return [torch.load(tmp_path / f"{r}.pt") for r in range(world)]


def test_each_rank_computes_its_share_and_gets_everything(tmp_path):
    x = torch.arange(11 * 3, dtype=torch.float32).view(11, 3)
    outs = run_group(tmp_path, 11)
    for out in outs:
        assert torch.equal(out["result"], per_row(x))
    assert [o["rows_computed"] for o in outs] == [6, 5]


def test_fewer_rows_than_ranks(tmp_path):
    outs = run_group(tmp_path, 1)
    for out in outs:
        assert torch.equal(out["result"], per_row(torch.arange(3, dtype=torch.float32).view(1, 3)))


def test_without_a_process_group_it_is_a_plain_map():
    x = torch.randn(10, 3)
    assert torch.equal(map_in_shards(per_row, x, chunk=3), per_row(x))
