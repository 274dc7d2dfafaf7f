"""A plain PyTorch training loop with the hwaware plugin (energy and latency on Eyeriss, logged to TensorBoard)."""
import torch
import torch.nn.functional as F

import hwaware
from hwaware.data import make_loader

model = hwaware.load_model("models/small_cnn.py")
loader = make_loader("builtin:shapes?n_train=640", "train", batch_size=64)
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
images, _ = next(iter(loader))
hw = hwaware.attach(model, images, hardware="eyeriss_v1", logdir="runs/plugin-example", every=5, optimizer=opt,
                    schedule={"method": "energy", "start": 5, "end": 15, "target": 0.6, "every": 5})
for epoch in range(2):
    for x, y in loader:
        out = model(x)
        loss = F.cross_entropy(out, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        # after optimizer.step(): masks, pruning schedule, loss/accuracy/lr; every 5 steps energy and latency
        hw.step(loss=loss, accuracy=(out.argmax(1) == y).float().mean())
hw.summary()
hw.close()
