"""StructNet-Avg(A)-APF post-processing: the annealed particle filter over data.skeleton's joint angles."""
from apf.filter import APFConfig, choose_starts, refine_angles, refine_poses

__all__ = ["APFConfig", "choose_starts", "refine_angles", "refine_poses"]
