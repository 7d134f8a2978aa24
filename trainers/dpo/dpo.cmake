# DPO and ScPO trainer sources (issue 11). Included from trainers/CMakeLists.txt.
target_sources(scorch_trainers PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/dpo_loss.cpp
  ${CMAKE_CURRENT_LIST_DIR}/dpo_trainer.cpp
  ${CMAKE_CURRENT_LIST_DIR}/scpo_pairs.cpp
  ${CMAKE_CURRENT_LIST_DIR}/scpo_trainer.cpp
)
